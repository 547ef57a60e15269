"""A node served on a port chosen before it opens, so its base URL (and its issuers' did:web
DIDs) name the address it really answers at."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.browser import _free_port
from tests.conftest import make_settings


@contextmanager
def live_node(var: Path, **overrides: object) -> Iterator[tuple[Platform, str]]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    node = Platform.open(make_settings(var, base_url=base, **overrides), run_jobs_here=False)
    node.migrate()
    server = uvicorn.Server(
        uvicorn.Config(create_app(node), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not answer /healthz")
        time.sleep(0.05)
    try:
        yield node, base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        node.close()
