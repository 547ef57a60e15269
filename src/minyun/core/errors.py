"""Domain errors: services raise these; only minyun.web.problems knows HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule said no. `code` is stable and names the problem type."""

    code = "error"
    title = "Request failed"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        self.extra: dict[str, Any] = extra
        # An audit entry to write after the failed transaction rolls back (see unit_of_work).
        self.audit: Any = None


class NotFound(DomainError):
    code = "not-found"
    title = "Not found"


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(DomainError):
    code = "forbidden"
    title = "Forbidden"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"


class Invalid(DomainError):
    code = "invalid"
    title = "Invalid input"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        if field is not None:
            extra["field"] = field
        super().__init__(detail, **extra)


class TooManyRequests(DomainError):
    code = "too-many-requests"
    title = "Too many requests"


class ConfigError(DomainError):
    code = "config"
    title = "Invalid configuration"
