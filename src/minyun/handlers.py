"""Import every module that registers a job handler, so any process can run any job."""

import minyun.apps.ecocloud.lake
import minyun.core.serving
import minyun.demo.province
import minyun.ingest.service
import minyun.push.relay
import minyun.push.webhooks  # noqa: F401
