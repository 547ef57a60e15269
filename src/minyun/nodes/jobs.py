"""The `nodes.publish` job: this node's catalog to its parent node (on demand or on a schedule)."""

from __future__ import annotations

from typing import Any

from minyun.core import jobs
from minyun.core.config import get_settings
from minyun.core.keys import load_node_key
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work
from minyun.nodes import service

KIND = "nodes.publish"


@jobs.handler(KIND)
def publish_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Send the catalog to every active parent; safe to run again (each send replaces)."""
    settings = get_settings()
    link = service.Link(settings.node_name, load_node_key(settings.var_dir))
    with unit_of_work(ctx.factory) as session:
        sent = service.publish_catalog(session, Principal.system(on_behalf_of=KIND), link)
    return {"sent": sent}
