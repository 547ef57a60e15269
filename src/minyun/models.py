"""Every table of the control plane, imported once so Alembic sees the whole schema."""

from minyun.accounts.models import ApiClient, User, WebSession
from minyun.apps.ecocloud.models import (
    Alert,
    AlertStep,
    Anomaly,
    CityHour,
    DeadLetter,
    Reading,
    Station,
)
from minyun.catalog.models import Resource, ResourceSchema
from minyun.core.audit import AuditCheckpoint, AuditRecord
from minyun.core.db import Base
from minyun.core.events import Event, EventHead
from minyun.core.jobs import Job
from minyun.core.policies import PlanEpoch
from minyun.core.serving import ServingRow, ServingState
from minyun.exchange.models import Application, Grant
from minyun.ingest.models import Version
from minyun.orgs.models import Division, Organization
from minyun.push.models import EventDeadLetter, RelayPosition, Subscription
from minyun.subjects.models import (
    SubjectChange,
    SubjectLink,
    SubjectModel,
    SubjectReview,
    SubjectRun,
)

__all__ = [
    "Alert",
    "AlertStep",
    "Anomaly",
    "ApiClient",
    "Application",
    "AuditCheckpoint",
    "AuditRecord",
    "Base",
    "CityHour",
    "DeadLetter",
    "Division",
    "Event",
    "EventDeadLetter",
    "EventHead",
    "Grant",
    "Job",
    "Organization",
    "PlanEpoch",
    "Reading",
    "RelayPosition",
    "Resource",
    "ResourceSchema",
    "ServingRow",
    "ServingState",
    "Station",
    "SubjectChange",
    "SubjectLink",
    "SubjectModel",
    "SubjectReview",
    "SubjectRun",
    "Subscription",
    "User",
    "Version",
    "WebSession",
]
