"""A real webhook receiver on a local port, verifying with the consumer-side `Verifier`."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from minyun.push.webhooks import Verifier, WebhookRejected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """Takes webhooks at http://127.0.0.1:<port>/hook once started; `fail` answers 500."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.verifier: Verifier | None = None
        self.received: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        self.fail = False
        self.hits = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.hits += 1
                    if receiver.fail:
                        self.send_response(500)
                        self.end_headers()
                        return
                    try:
                        if receiver.verifier is None:
                            raise WebhookRejected("no secret yet")
                        event = receiver.verifier.verify(body, dict(self.headers.items()))
                    except WebhookRejected as exc:
                        receiver.rejected.append(str(exc))
                        self.send_response(400)
                        self.end_headers()
                        return
                    receiver.received.append(event)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def offsets(self) -> list[int]:
        with self._lock:
            return [int(e["offset"]) for e in self.received]
