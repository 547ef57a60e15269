"""The unit of work: one transaction per request, command or job step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from minyun.core.errors import DomainError


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Commit on success; on a refused request roll back, then keep its audit entry."""
    session = factory()
    try:
        with session.begin():
            yield session
    except DomainError as exc:
        if exc.audit is not None:
            with factory.begin() as audit_session:
                exc.audit.write(audit_session)
        raise
    finally:
        session.close()
