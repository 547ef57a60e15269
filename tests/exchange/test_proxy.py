"""The proxy service: a consumer's call forwarded to the provider's own endpoint, signed with
an RFC 9421 HTTP Message Signature, verified and logged by the provider, audited by minyun
with the same nonce; refused without a grant; a replayed or altered call refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from minyun.core.audit import AuditRecord
from minyun.core.errors import Forbidden, Invalid
from minyun.core.platform import Platform
from minyun.core.uow import unit_of_work
from minyun.exchange import proxy
from minyun.exchange.proxy import ProxyRejected, ProxyVerifier
from minyun.web.app import create_app
from tests.exchange.test_grant_access import CODE, grant, setup
from tests.query.data import steward


class Provider:
    """The provider's own endpoint: verifies each call from minyun and logs it."""

    def __init__(self) -> None:
        self.verifier: ProxyVerifier | None = None
        self.log: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/svc"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                url = f"http://{self.headers['host']}{self.path}"
                headers = dict(self.headers.items())
                try:
                    assert provider.verifier is not None
                    call = provider.verifier.verify(self.command, url, headers, body)
                except ProxyRejected as exc:
                    provider.refused.append(str(exc))
                    self.send_response(401)
                    self.end_headers()
                    return
                provider.log.append({"call": call, "request": (self.command, url, headers, body)})
                answer = f'{{"path": "{self.path}", "consumer": "{call.consumer}"}}'.encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.stop()


def test_a_proxied_call_is_signed_verified_and_logged_on_both_sides(
    platform: Platform, provider: Provider
) -> None:
    client = TestClient(create_app(platform))
    s = setup(platform, client)
    with unit_of_work(platform.factory) as session:
        proxy.register(session, steward(s.provider_id), CODE, endpoint=provider.url,
                       allow_private=True)  # fmt: skip
    key = client.get("/api/v1/proxy/key").json()
    provider.verifier = ProxyVerifier(key["public_key_pem"], key["keyid"])
    url = f"/api/v1/resources/{CODE}/proxy/status/7"
    # No grant, no call: refused before anything is forwarded, and audited.
    assert client.get(url, headers=s.bearer).status_code == 403
    assert provider.log == []
    grant_id = grant(platform, s, ["id", "city"])
    answer = client.get(url, params={"purpose": "低保核验", "x": "1"}, headers=s.bearer)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "path": "/svc/status/7?x=1",
        "consumer": provider.log[0]["call"].consumer,
    }
    call = provider.log[0]["call"]
    assert (call.purpose, call.grant) == ("低保核验", f"grant={grant_id}")
    assert "authorization" not in {k.lower() for k in provider.log[0]["request"][2]}
    posted = client.post(url, content=b'{"ric": "x"}', headers={**s.bearer,
                         "content-type": "application/json"})  # fmt: skip
    assert posted.status_code == 200 and len(provider.log) == 2
    assert provider.log[1]["call"].purpose == "核验身份"  # the grant's, when the call names none
    # minyun's audit record carries the same nonce as the provider's log.
    with platform.factory() as session:
        records = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "exchange.proxy")
        ).all()
    assert [r.outcome for r in records] == ["success", "success"]
    assert f"nonce={answer.headers['minyun-proxy-nonce']}" in (records[0].detail or "")
    assert records[0].purpose == "低保核验"
    # Replayed, altered or foreign-signed calls are refused by the provider.
    method, target, headers, body = provider.log[1]["request"]
    with pytest.raises(ProxyRejected, match="replay"):
        provider.verifier.verify(method, target, headers, body)
    fresh = ProxyVerifier(key["public_key_pem"], key["keyid"])
    with pytest.raises(ProxyRejected):
        fresh.verify(method, target, headers, b'{"ric": "y"}')
    with pytest.raises(ProxyRejected):
        fresh.verify(method, target, {**headers, "minyun-grant": "grant=999"}, body)
    stranger = ProxyVerifier(key["public_key_pem"], "another-key")
    with pytest.raises(ProxyRejected):
        stranger.verify(method, target, headers, body)


def test_only_the_provider_registers_and_bad_paths_are_refused(
    platform: Platform, provider: Provider
) -> None:
    client = TestClient(create_app(platform))
    s = setup(platform, client)
    with (
        pytest.raises(Forbidden, match="providing department"),
        unit_of_work(platform.factory) as session,
    ):
        proxy.register(session, steward(s.consumer_id), CODE, endpoint=provider.url,
                       allow_private=True)  # fmt: skip
    with (
        pytest.raises(Invalid, match="inside this network"),
        unit_of_work(platform.factory) as session,
    ):
        proxy.register(session, steward(s.provider_id), CODE, endpoint=provider.url,
                       allow_private=False)  # fmt: skip
    grant(platform, s, ["id"])
    missing = client.get(f"/api/v1/resources/{CODE}/proxy/x", headers=s.bearer)
    assert missing.status_code == 404
    assert client.delete(f"/api/v1/resources/{CODE}/proxy/x", headers=s.bearer).status_code == 405
