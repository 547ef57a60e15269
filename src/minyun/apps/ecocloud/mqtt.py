"""Live readings over MQTT: a subscriber that batches messages into ingest, and a replay publisher.

Each station publishes one JSON object per hour on `minyun/eco/stations/<code>/readings`:

    {"station": "1280A", "hour": "2022-01-04T10:00:00+08:00",
     "pm10": 53, "pm2_5": 34, "o3": 90, "no2": 33, "so2": 6, "co": 0.7,
     "name": "鼓山(对照点)", "city": "福州市", "longitude": 119.39, "latitude": 26.05}

name, city, longitude and latitude are needed only the first time a station is heard.
A message that cannot be read becomes a dead letter with its reason; the stream goes on.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pyarrow as pa
import pyarrow.compute as pc
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session, sessionmaker

from minyun.apps.ecocloud import cnemc, detect, ingest, lake, readings
from minyun.apps.ecocloud.models import Source
from minyun.core import jobs
from minyun.core.config import Settings
from minyun.core.security import Principal
from minyun.core.uow import unit_of_work

log = logging.getLogger(__name__)

TOPIC_PREFIX = "minyun/eco/stations"
TOPIC = f"{TOPIC_PREFIX}/+/readings"
MAX_PAYLOAD = 16 * 1024  # a reading is ~300 bytes; anything far larger is not one
FIELDS = ("hour", *readings.POLLUTANTS, *readings.META)
ACTOR = Principal.system(on_behalf_of="mqtt")
_STRING_SCHEMA = pa.schema([(name, pa.string()) for name in ("station_code", *FIELDS, "payload")])


def topic_for(station_code: str, prefix: str = TOPIC_PREFIX) -> str:
    """The topic a station publishes its readings on."""
    return f"{prefix}/{station_code}/readings"


def parse_message(
    topic: str, payload: bytes, prefix: str = TOPIC_PREFIX
) -> dict[str, str | None] | str:
    """An ingest row (every value as text, for the service to check), or why there is none."""
    if len(payload) > MAX_PAYLOAD:
        return f"payload of {len(payload)} bytes is larger than {MAX_PAYLOAD}"
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"malformed JSON: {exc}"
    if not isinstance(doc, dict):
        return "payload is not a JSON object"
    station = doc.get("station")
    if not isinstance(station, str):
        return "payload has no station code"
    if topic != topic_for(station, prefix):
        return f"topic {topic} does not name station {station}"
    row: dict[str, str | None] = {"station_code": station}
    for name in FIELDS:
        value = doc.get(name)
        if isinstance(value, bool | dict | list):
            return f"{name} is not a {'number' if name in readings.POLLUTANTS else 'value'}"
        row[name] = None if value is None else str(value)
    return row


def _text(payload: bytes) -> str:
    return payload[:MAX_PAYLOAD].decode("utf-8", errors="replace")


@dataclass
class Stats:
    """What the subscriber has done since it started."""

    messages: int = 0
    batches: int = 0
    readings: int = 0
    refused: int = 0
    alerts_opened: list[int] = field(default_factory=list)
    failures: int = 0
    publishes: int = 0  # eco.publish jobs submitted


class Subscriber:
    """Subscribes to every station's topic and ingests messages in batches (one transaction each)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        rules: detect.Rules = detect.DEFAULT_RULES,
        batch_size: int = 1000,
        batch_seconds: float = 0.25,
        client_id: str = "",
        prefix: str = TOPIC_PREFIX,
        publish_every: float | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.factory = factory
        # Publishing to the lake: an `eco.publish` job at most every `publish_every` seconds
        # after a batch changed something, keyed by the minute (None: never).
        self.publish_every = publish_every
        self.settings = settings
        self._dirty = False
        self._next_publish = 0.0
        self.host, self.port = host, port
        self.rules = rules
        self.prefix = prefix
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self.stats = Stats()
        self.received = 0  # messages handed over by the network thread so far
        self.subscribed = threading.Event()
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._busy = threading.Lock()
        self._worker: threading.Thread | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        # Subscribe on every (re)connect: the broker forgets a clean session's subscriptions.
        client.subscribe(f"{self.prefix}/+/readings", qos=1)

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        # The network thread only queues; parsing and the database happen in the worker.
        self._inbox.put((message.topic, bytes(message.payload)))
        self.received += 1

    def start(self) -> Subscriber:
        """Connect and start the network loop and the ingest worker."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._run, name="eco-mqtt-ingest", daemon=True)
        self._worker.start()
        return self

    def stop(self) -> None:
        """Ingest what has arrived, then disconnect."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
        self.client.disconnect()
        self.client.loop_stop()

    def wait_idle(self, *, quiet: float = 1.0, timeout: float = 60.0) -> bool:
        """Wait until nothing has arrived for `quiet` seconds and every batch is ingested."""
        deadline = time.monotonic() + timeout
        last = (-1, -1.0)
        while time.monotonic() < deadline:
            with self._busy:
                seen = self.stats.messages
                empty = self._inbox.empty()
            if empty and seen == last[0]:
                if time.monotonic() - last[1] >= quiet:
                    return True
            else:
                last = (seen, time.monotonic())
            time.sleep(0.05)
        return False

    def _run(self) -> None:
        while not (self._stop.is_set() and self._inbox.empty()):
            batch = list(self._drain())
            if batch:
                with self._busy:
                    self.process(batch)
            if self._dirty and time.monotonic() >= self._next_publish:
                self.submit_publish()
        if self._dirty:
            self.submit_publish(final=True)  # what the last batches changed, before stopping

    def submit_publish(self, *, final: bool = False) -> None:
        """Queue the lake publish of this minute; it runs after the batches before it committed.

        The job is keyed by the minute, so several listeners publish once a minute together;
        the last one, when stopping, is not keyed (this minute's job may be over already).
        """
        if self.publish_every is None:
            raise RuntimeError("this listener does not publish to the lake (publish_every is None)")
        self._next_publish = time.monotonic() + self.publish_every
        try:
            with unit_of_work(self.factory) as session:
                key = None if final else lake.minute_key()
                job = lake.submit_publish(session, ACTOR, key=key, settings=self.settings)
                queued = job.state == jobs.JobState.QUEUED
        except Exception:  # the lake can wait; the stream must not
            log.exception("could not submit the eco-cloud lake publish")
            return
        # A job of this minute that already started may not see the latest batch: try again.
        if queued:
            self._dirty = False
            self.stats.publishes += 1

    def _drain(self) -> Iterator[tuple[str, bytes]]:
        deadline = time.monotonic() + self.batch_seconds
        taken = 0
        while taken < self.batch_size:
            wait = deadline - time.monotonic()
            if wait <= 0:
                return
            try:
                yield self._inbox.get(timeout=wait)
            except queue.Empty:
                return
            taken += 1

    def process(self, messages: list[tuple[str, bytes]]) -> None:
        """Ingest one batch; a batch that fails is dead-lettered whole, and the stream goes on."""
        rows: list[dict[str, str | None]] = []
        letters: list[dict[str, str]] = []
        for topic, payload in messages:
            parsed = parse_message(topic, payload, self.prefix)
            if isinstance(parsed, str):
                letters.append({"payload": _text(payload), "reason": parsed})
            else:
                rows.append({**parsed, "payload": _text(payload)})
        try:
            with unit_of_work(self.factory) as session:
                if letters:
                    ingest.add_dead_letters(
                        session, pa.Table.from_pylist(letters), source=Source.MQTT
                    )
                report = ingest.ingest_readings(
                    session,
                    ACTOR,
                    pa.Table.from_pylist(rows, schema=_STRING_SCHEMA),
                    source=Source.MQTT,
                    rules=self.rules,
                )
        except Exception as exc:  # one bad batch must never stop the stream
            log.exception("MQTT batch of %d messages failed", len(messages))
            self.stats.failures += 1
            self._dead_letter_all(messages, f"ingest failed: {type(exc).__name__}: {exc}")
        else:
            self.stats.readings += report.inserted + report.updated + report.unchanged
            if self.publish_every is not None and report.inserted + report.updated:
                self._dirty = True
            self.stats.refused += report.refused + len(letters)
            self.stats.alerts_opened += report.alerts_opened
        self.stats.batches += 1
        self.stats.messages += len(messages)

    def _dead_letter_all(self, messages: list[tuple[str, bytes]], reason: str) -> None:
        letters = pa.Table.from_pylist(
            [{"payload": _text(p), "reason": reason[:2000]} for _t, p in messages]
        )
        try:
            with unit_of_work(self.factory) as session:
                ingest.add_dead_letters(session, letters, source=Source.MQTT)
        except Exception:  # the database itself is down: the log is all that is left
            log.exception("could not keep %d dead letters", len(messages))


# --- replay ------------------------------------------------------------------------


def messages_of(rows: pa.Table, prefix: str = TOPIC_PREFIX) -> list[tuple[str, bytes]]:
    """(topic, JSON payload) per reading of CNEMC-layout ingest rows, hours with an offset."""
    hours = pc.utf8_replace_slice(rows["hour"], 19, 19, "+08:00")  # CNEMC writes China time
    table = rows.set_column(rows.column_names.index("hour"), "hour", hours)
    out = []
    for row in table.to_pylist():
        doc: dict[str, Any] = {"station": row["station_code"], "hour": row["hour"]}
        for name in readings.POLLUTANTS:
            doc[name] = _number(row[name])
        doc.update(
            name=row["name"],
            city=row["city"],
            longitude=_number(row["longitude"]),
            latitude=_number(row["latitude"]),
        )
        payload = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        out.append((topic_for(row["station_code"], prefix), payload))
    return out


def _number(text: str | None) -> float | int | None:
    if text is None:
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def publisher(host: str = "127.0.0.1", port: int = 1883) -> mqtt.Client:
    """A connected client with its network loop running."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    return client


def publish(client: mqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 and wait until the broker has them all."""
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(timeout=30)


def replay(
    path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    speed: float = 3600.0,
    transform: Callable[[pa.Table], pa.Table] | None = None,
    on_hour: Callable[[str, int], None] | None = None,
    prefix: str = TOPIC_PREFIX,
) -> int:
    """Publish CNEMC files hour by hour; `speed` N plays an hour in 3600/N s (0: no pause)."""
    client = publisher(host, port)
    sent = 0
    try:
        for n, file in enumerate(cnemc.cnemc_files(path)):
            if n and speed > 0:
                time.sleep(3600.0 / speed)
            rows = ingest.rows_from_cnemc(cnemc.read_cnemc_csv(file))
            if transform is not None:
                rows = transform(rows)
            messages = messages_of(rows, prefix)
            publish(client, messages)
            sent += len(messages)
            if on_hour is not None:
                on_hour(file.stem, len(messages))
    finally:
        client.disconnect()
        client.loop_stop()
    return sent
