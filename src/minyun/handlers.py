"""Import every module that registers a job handler, so any process can run any job."""

import minyun.apps.ecocloud.lake
import minyun.apps.food.pull
import minyun.apps.food.subscriptions  # query subscriptions delivered (food.subscriptions)
import minyun.apps.grid.schedule  # grid.escalate, the SLA clocks run out
import minyun.core.serving
import minyun.demo.province
import minyun.exchange.batch  # batch deliveries (exchange.batch)
import minyun.exchange.service  # the grant policy (core.policies.GRANTS)
import minyun.ingest.service
import minyun.licences.service  # licences.issue, queued by resource.updated
import minyun.nodes.jobs  # the nodes.publish job and the remote-read check
import minyun.opendata.applications  # developers' approved applications (core.policies.GRANTS)
import minyun.opendata.service  # the open-data release finder and the refresh on new versions
import minyun.push.relay
import minyun.push.webhooks
import minyun.subjects.policy  # noqa: F401 - the data subject's own rows (core.policies.DATA_SUBJECTS)
