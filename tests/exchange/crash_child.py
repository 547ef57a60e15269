"""Run one batch delivery job and hang in the middle of its sink's COPY, to be killed there.

`python -m tests.exchange.crash_child <var_dir> <job_id> <ready_file>`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import minyun.handlers  # noqa: F401 - the job kinds
from minyun.core import jobs
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.exchange import sinks


def main(var: str, job_id: str, ready: str) -> None:
    sinks.CHUNK_ROWS = 10
    node = Platform.open(load_settings(var_dir=Path(var)), run_jobs_here=False)
    real = jobs.JobContext.progress
    calls = {"n": 0}

    def hang(self: jobs.JobContext, done: int, *args: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:  # three chunks copied, the sink's transaction open
            Path(ready).write_text("copying", encoding="utf-8")
            time.sleep(600)
        real(self, done, *args, **kw)

    jobs.JobContext.progress = hang  # type: ignore[method-assign]
    jobs.run(node.factory, job_id)


if __name__ == "__main__":
    main(*sys.argv[1:4])
