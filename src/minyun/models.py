"""Every table of the control plane, imported once so Alembic sees the whole schema."""

from minyun.accounts.models import ApiClient, User
from minyun.core.audit import AuditCheckpoint, AuditRecord
from minyun.core.db import Base
from minyun.core.jobs import Job
from minyun.orgs.models import Division, Organization

__all__ = [
    "ApiClient",
    "AuditCheckpoint",
    "AuditRecord",
    "Base",
    "Division",
    "Job",
    "Organization",
    "User",
]
