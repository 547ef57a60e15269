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
from minyun.apps.food.models import (
    CaptureJob,
    FoodEvent,
    FoodEventTerm,
    FoodName,
    NamedQuery,
    PullSource,
)
from minyun.apps.grid.models import (
    ApiKey,
    Area,
    GridService,
    Photo,
    Report,
    RoutingRule,
    Step,
    Task,
)
from minyun.catalog.models import Resource, ResourceSchema
from minyun.core.audit import AuditCheckpoint, AuditRecord
from minyun.core.db import Base
from minyun.core.events import Event, EventHead
from minyun.core.jobs import Job
from minyun.core.policies import PlanEpoch
from minyun.core.serving import ServingRow, ServingState
from minyun.demo.market import Enterprise
from minyun.exchange.batch_models import BatchDelivery, BatchSubscription
from minyun.exchange.models import Application, Grant, ProxyService
from minyun.ingest.models import Version
from minyun.licences.models import IssuerKey, Licence, LicenceType, LicenceUse, StatusList
from minyun.nodes.models import Node, NodeApplication, NodeNonce, NodeOrganization, NodeResource
from minyun.opendata.models import DeveloperKey, OpenDataset, OpenVersion
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
    "ApiKey",
    "Application",
    "Area",
    "AuditCheckpoint",
    "AuditRecord",
    "Base",
    "BatchDelivery",
    "BatchSubscription",
    "CaptureJob",
    "CityHour",
    "DeadLetter",
    "DeveloperKey",
    "Division",
    "Enterprise",
    "Event",
    "EventDeadLetter",
    "EventHead",
    "FoodEvent",
    "FoodEventTerm",
    "FoodName",
    "Grant",
    "GridService",
    "IssuerKey",
    "Job",
    "Licence",
    "LicenceType",
    "LicenceUse",
    "NamedQuery",
    "Node",
    "NodeApplication",
    "NodeNonce",
    "NodeOrganization",
    "NodeResource",
    "OpenDataset",
    "OpenVersion",
    "Organization",
    "Photo",
    "PlanEpoch",
    "ProxyService",
    "PullSource",
    "Reading",
    "RelayPosition",
    "Report",
    "Resource",
    "ResourceSchema",
    "RoutingRule",
    "ServingRow",
    "ServingState",
    "Station",
    "StatusList",
    "Step",
    "SubjectChange",
    "SubjectLink",
    "SubjectModel",
    "SubjectReview",
    "SubjectRun",
    "Subscription",
    "Task",
    "User",
    "Version",
    "WebSession",
]
