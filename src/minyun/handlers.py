"""Import every module that registers a job handler, so any process can run any job."""

import minyun.apps.ecocloud.lake
import minyun.apps.food.pull
import minyun.core.serving
import minyun.demo.province
import minyun.exchange.service  # the grant policy (core.policies.GRANTS)
import minyun.ingest.service
import minyun.push.relay
import minyun.push.webhooks  # noqa: F401
