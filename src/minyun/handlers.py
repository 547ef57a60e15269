"""Import every module that registers a job handler, so any process can run any job."""

import minyun.apps.ecocloud.lake
import minyun.core.serving
import minyun.demo.province
import minyun.exchange.service  # the grant policy (core.policies.GRANTS)
import minyun.ingest.service
import minyun.push.relay
import minyun.push.webhooks
import minyun.subjects.policy  # noqa: F401 - the data subject's own rows (core.policies.DATA_SUBJECTS)
