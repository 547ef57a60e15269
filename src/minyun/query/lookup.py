"""The governed key lookup: one row by primary key, for API clients, at online-call speed.

`GET /api/v1/resources/{code}/rows/{key}` is the call departments make most (the seeds
report tens of thousands a day, with peaks far above the average). It passes every rule of
the house and still costs little more than a plain lookup:

1. the bearer token is verified once and its claims cached until it expires
   (`core.security.TokenCache`); whether its client is still active is read on every call,
   so a revoked client is refused at once, in every process;
2. one statement (`core.serving.KeyFacts`) reads the client, the resource, the serving
   index's version, the row and the plan epoch together; a grant's row filter is tested on
   that row in Python (`core.filters.row_test`, held to the engine's SQL by a property
   test), and a row outside it is answered as no row at all;
3. the access plan is cached, keyed by everything it depends on: client, scopes,
   organisation, resource, schema version, status and the plan epoch, which every change of
   a grant, role, schema or sharing type moves on (`core.policies.bump_epoch`);
4. the row is projected and masked by the serving reader (`core.serving.shown`);
5. its audit record goes to the group-commit appender, and the response waits until the
   batch holding it is durable.

On PostgreSQL the statement runs on asyncpg, on the event loop; on the embedded SQLite node
it runs on a worker thread. When the index cannot answer (behind the lake, no primary key,
a row filter on types only the engine compares exactly) the lookup is the ordinary row
query, on a worker thread.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import anyio
import pyarrow as pa

from minyun.catalog import service as catalog
from minyun.core import audit, clock, policies, serving
from minyun.core.errors import DomainError, Invalid, NotFound, Unauthenticated
from minyun.core.filters import RowTest, quote, row_test
from minyun.core.platform import Platform
from minyun.core.policies import AccessPlan
from minyun.core.quotas import quotas_for
from minyun.core.reading import key_texts, output_schema
from minyun.core.security import Principal, TokenCache
from minyun.core.serving import KeyFacts, json_value
from minyun.core.uow import unit_of_work
from minyun.query import service

PLANS_CACHED = 4096
SHAPERS_CACHED = 64  # field lists per plan


@dataclass(frozen=True)
class Found:
    """A lookup's answer: the row as the plan shows it (None: no such key), the version read."""

    row: dict[str, Any] | None
    version: int

    def json(self) -> bytes:
        body = {"row": self.row, "version": self.version}
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=json_value)
        return text.encode()


@dataclass(frozen=True)
class _Prepared:
    """A cached plan and what serving it needs: the output schema and the key's kind."""

    plan: AccessPlan
    schema: pa.Schema
    key_kind: str | None
    # The plan's row filter as a Python test of the stored row (None: no filter, or one
    # only the engine follows exactly, and then the lake answers).
    row_test: RowTest | None = None
    # Per field list asked for: how its rows are projected and masked (None: Arrow path).
    shapers: dict[tuple[str, ...], serving.RowShaper | None] = field(default_factory=dict)

    def shaper(self, fields: list[str], secret: bytes) -> serving.RowShaper | None:
        wanted = tuple(fields)
        if wanted not in self.shapers:
            if len(self.shapers) >= SHAPERS_CACHED:
                self.shapers.clear()
            self.shapers[wanted] = serving.row_shaper(self.plan, self.schema, wanted, secret=secret)
        return self.shapers[wanted]


class KeyLookups:
    """The governed key lookups of one process (caches of tokens and plans, the fact store)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.tokens = TokenCache(
            platform.node_key,
            issuer=platform.settings.base_url,
            audience=platform.token_audience,
        )
        self.store = serving.fact_store(platform.settings.database_url, platform.factory)
        self.secret = platform.node_key.derive("reader")
        self.quotas = quotas_for(platform.settings.rate_limit_uri, platform.settings.node_name)
        self._plans: OrderedDict[tuple[Any, ...], _Prepared] = OrderedDict()
        self._lock = threading.Lock()

    async def lookup(
        self,
        authorization: str,
        code: str,
        key: str,
        *,
        fields: str | None = None,
        purpose: str | None = None,
    ) -> Found:
        """The row of `key` in resource `code` as the caller's plan shows it; audited."""
        try:
            claims = self.tokens.claims(_bearer(authorization))
        except DomainError as exc:
            await self._deny(Principal.anonymous(), "auth.token-use", None, str(exc))
            raise
        client_id = str(claims["sub"]).removeprefix("client:")
        facts = await self.store.facts(client_id, code, serving.encode_key([key]))
        if not facts.client_active or facts.client_org is None:
            detail = "access token refused: client disabled"
            await self._deny(Principal.anonymous(), "auth.token-use", None, detail)
            raise Unauthenticated(detail)
        actor = Principal(
            kind="client",
            name=client_id,
            organization_id=facts.client_org,
            scopes=frozenset(str(claims.get("scope", "")).split()) & facts.client_scopes,
        )
        prepared = await self._prepared(actor, code, facts)
        plan = prepared.plan  # the purpose goes to the audit record below
        wanted = plan.fields_for([n.strip() for n in fields.split(",")] if fields else None)
        if not _served(facts, prepared):
            return await anyio.to_thread.run_sync(
                self._from_rows, actor, code, key, prepared, fields, purpose
            )
        if plan.rate_limit is not None:
            await self._admit(plan, purpose)
        value = _canonical(key, prepared.key_kind)
        row = facts.row if value is not None else None
        if row is not None and prepared.row_test is not None and not prepared.row_test(row):
            row = None  # outside the grant's rows: as if there were no such key
        shape = prepared.shaper(wanted, self.secret)
        if shape is not None:
            rows = shape([row]) if row else []
        else:  # types the Python masks do not take: the Arrow path
            shown = serving.shown(
                plan, [row] if row else [], prepared.schema, wanted, secret=self.secret
            )
            rows = shown.to_pylist()
        entry = audit.Entry.of(
            actor, policies.READ, target=code, target_type="resource",
            keys=key_texts([[value]]) if rows else [], count=len(rows),
            purpose=purpose or plan.purpose,
            detail=f"version={facts.lake_version}; fields={','.join(wanted)}; policy={plan.policy}"
            + (f"; {plan.reason}" if plan.policy == "grant" and plan.reason else "") + "; index",
        )  # fmt: skip
        await self.platform.audit_appender.append_async(entry)
        if not rows:
            raise NotFound(f"resource {code} has no row {key}")
        return Found(rows[0], facts.lake_version or 0)

    async def _prepared(self, actor: Principal, code: str, facts: KeyFacts) -> _Prepared:
        """The cached plan for this caller and resource state; built (and audited) on a miss."""
        cache_key = (
            actor.name, actor.scopes, actor.organization_id, code, facts.schema_version,
            facts.status, facts.lake_version, facts.epoch,
        )  # fmt: skip
        with self._lock:
            found = self._plans.get(cache_key)
            if found is not None and _current(found.plan):
                self._plans.move_to_end(cache_key)
                return found
        prepared = await anyio.to_thread.run_sync(self._prepare, actor, code, facts.lake_version)
        with self._lock:
            self._plans[cache_key] = prepared
            while len(self._plans) > PLANS_CACHED:
                self._plans.popitem(last=False)
        return prepared

    def _prepare(self, actor: Principal, code: str, lake_version: int | None) -> _Prepared:
        with unit_of_work(self.platform.factory) as session:
            plan = catalog.access_data(session, actor, code, policies.READ)
        schema = pa.schema([])
        kind = None
        test = None
        if lake_version is not None and self.platform.lake.exists(code):
            schema = output_schema(self.platform.lake, code, lake_version)
            pk = plan.resource.primary_key
            if len(pk) == 1 and pk[0] in schema.names:
                kind = serving.key_kind(schema.field(pk[0]).type)
            if plan.row_filter is not None:
                test = row_test(plan.row_filter, schema)
        return _Prepared(plan, schema, kind, row_test=test)

    def read_as(
        self,
        actor: Principal,
        code: str,
        key: str,
        *,
        fields: str | None = None,
        purpose: str | None = None,
    ) -> Found:
        """The lookup for a signed-in user (or anyone without a token): the ordinary row query."""
        with unit_of_work(self.platform.factory) as session:
            plan = catalog.access_data(session, actor, code, policies.READ, purpose=purpose)
        kind = None
        version = plan.resource.lake_version
        if version is not None and len(plan.resource.primary_key) == 1:
            schema = output_schema(self.platform.lake, code, version)
            if plan.resource.primary_key[0] in schema.names:
                kind = serving.key_kind(schema.field(plan.resource.primary_key[0]).type)
        prepared = _Prepared(plan, pa.schema([]), kind)
        return self._from_rows(actor, code, key, prepared, fields, purpose)

    def _from_rows(
        self,
        actor: Principal,
        code: str,
        key: str,
        prepared: _Prepared,
        fields: str | None,
        purpose: str | None,
    ) -> Found:
        """The lookup as an ordinary row query (the index cannot answer it)."""
        pk = prepared.plan.resource.primary_key
        if len(pk) != 1:
            raise Invalid(f"{code} has no single-field primary key; use /rows?filter=", field="key")
        canonical = _canonical(key, prepared.key_kind) is not None
        literal = key if canonical and prepared.key_kind == "integer" else _quoted(key)
        with unit_of_work(self.platform.factory) as session:
            page = service.query_rows(
                session, self.platform.lake, actor, code, fields=fields,
                filter=f"{quote(pk[0])} = {literal}", limit=1, purpose=purpose,
            )  # fmt: skip
        rows = page.table.to_pylist()
        if not rows:
            raise NotFound(f"resource {code} has no row {key}")
        return Found(rows[0], page.version)

    async def _admit(self, plan: AccessPlan, purpose: str | None) -> None:
        """Count the call on its grant's rate limit; beyond it, 429 and (budgeted) audited."""
        quotas = self.quotas
        refusal = (
            quotas.hit(plan) if quotas.local else await anyio.to_thread.run_sync(quotas.hit, plan)
        )
        if refusal is None:
            return
        if refusal.record:
            entry = audit.Entry.of(
                plan.actor, policies.READ, target=plan.code, target_type="resource",
                purpose=purpose or plan.purpose, outcome=audit.Outcome.DENIED,
                detail=refusal.detail,
            )  # fmt: skip
            await self.platform.audit_appender.append_async(entry)
        raise refusal.error

    async def _deny(self, actor: Principal, action: str, code: str | None, detail: str) -> None:
        entry = audit.Entry.of(
            actor, action, target=code, target_type="resource" if code else None,
            outcome=audit.Outcome.DENIED, detail=detail,
        )  # fmt: skip
        await self.platform.audit_appender.append_async(entry)


def _bearer(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use 'Authorization: Bearer <access token>'")
    return token.strip()


def _current(plan: AccessPlan) -> bool:
    """Whether a cached plan still holds: a grant's plan ends when the grant expires."""
    return plan.valid_until is None or clock.now() < plan.valid_until


def _served(facts: KeyFacts, prepared: _Prepared) -> bool:
    """Whether the index answers: at the resource's version, keyed, and the plan's row
    filter (if any) one the Python row test follows exactly."""
    return (
        facts.lake_version is not None
        and facts.served_version == facts.lake_version
        and prepared.key_kind is not None
        and (prepared.plan.row_filter is None or prepared.row_test is not None)
        and set(prepared.plan.resource.primary_key) <= prepared.plan.clear
    )


def _canonical(key: str, kind: str | None) -> Any:
    """The key's value when `key` is its canonical text (as the index stores keys), else None."""
    if kind == "string":
        return key
    if kind == "integer":
        try:
            value = int(key)
        except ValueError:
            return None
        return value if str(value) == key else None
    if kind == "date":
        try:
            day = date.fromisoformat(key)
        except ValueError:
            return None
        return day if day.isoformat() == key else None
    return None


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
