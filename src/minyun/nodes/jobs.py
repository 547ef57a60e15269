"""The `nodes.publish` job: this node's catalog to its parent node (on demand or on a schedule).

Submit it with `{"node": <this node's id>}` (`submit_publish`); the node key is the one the
job's session carries, so the job signs as the node that runs it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from minyun.core import jobs
from minyun.core.errors import ConfigError
from minyun.core.security import Principal, authorize
from minyun.core.uow import unit_of_work
from minyun.nodes import service

KIND = "nodes.publish"


def submit_publish(session: Session, actor: Principal, node_id: str) -> jobs.Job:
    """Queue a publication of the catalog (administrators); it runs once this commits."""
    authorize(session, actor, "nodes.manage", target="catalog", target_type="node")
    return jobs.submit(session, actor, KIND, {"node": node_id})


@jobs.handler(KIND)
def publish_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Send the catalog to every active parent; safe to run again (each send replaces)."""
    with unit_of_work(ctx.factory) as session:
        key = session.info.get("node_key")
        if key is None:
            raise ConfigError("the job's session has no node key")
        link = service.Link(str(ctx.params["node"]), key)
        sent = service.publish_catalog(session, Principal.system(on_behalf_of=KIND), link)
    return {"sent": sent}
