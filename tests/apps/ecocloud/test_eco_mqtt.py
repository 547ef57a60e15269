"""The MQTT subscriber against the local Mosquitto: batches, dead letters, replay."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from minyun.apps.ecocloud import mqtt
from minyun.apps.ecocloud.models import DeadLetter, Reading, Station
from minyun.core.platform import Platform
from tests.apps.ecocloud.conftest import DAY

GOOD = {
    "station": "1282A",
    "hour": "2022-01-04T10:00:00+08:00",
    "pm10": 76,
    "pm2_5": 37,
    "o3": 8,
    "no2": 76,
    "so2": 3,
    "co": 1.0,
    "name": "师大",
    "city": "福州市",
    "longitude": 119.2681,
    "latitude": 26.0504,
}


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("minyun/eco/stations/1282A/readings", b"{not json", "malformed JSON"),
        ("minyun/eco/stations/1282A/readings", b"\xff\xfe", "malformed JSON"),
        ("minyun/eco/stations/1282A/readings", b"[1, 2]", "payload is not a JSON object"),
        ("minyun/eco/stations/1282A/readings", b'{"hour": "x"}', "payload has no station code"),
        ("minyun/eco/stations/9999A/readings", json.dumps(GOOD).encode(), "topic minyun"),
        (
            "minyun/eco/stations/1282A/readings",
            json.dumps({**GOOD, "pm10": True}).encode(),
            "pm10 is not a number",
        ),
        ("minyun/eco/stations/1282A/readings", b"{" + b" " * 20000 + b"}", "payload of"),
    ],
)
def test_unreadable_messages_say_why(topic: str, payload: bytes, reason: str) -> None:
    parsed = mqtt.parse_message(topic, payload)
    assert isinstance(parsed, str) and parsed.startswith(reason)


def test_a_good_message_is_a_row_of_text() -> None:
    row = mqtt.parse_message("minyun/eco/stations/1282A/readings", json.dumps(GOOD).encode())
    assert isinstance(row, dict)
    assert row["station_code"] == "1282A" and row["pm2_5"] == "37" and row["co"] == "1.0"


@pytest.fixture
def prefix() -> str:
    # A topic tree of its own, so parallel runs on the same broker never see each other.
    return f"minyun-test/{uuid.uuid4().hex[:12]}/eco/stations"


@pytest.fixture
def subscriber(platform: Platform, prefix: str) -> Iterator[mqtt.Subscriber]:
    sub = mqtt.Subscriber(platform.factory, prefix=prefix, batch_seconds=0.1).start()
    assert sub.subscribed.wait(10)
    yield sub
    sub.stop()


def test_stream_survives_bad_messages_and_dead_letters_them(
    platform: Platform, subscriber: mqtt.Subscriber, prefix: str
) -> None:
    client = mqtt.publisher()
    try:
        topic = mqtt.topic_for("1282A", prefix)
        mqtt.publish(
            client,
            [
                (topic, b"{broken"),
                (topic, json.dumps(GOOD).encode()),
                (topic, json.dumps({**GOOD, "pm2_5": -3}).encode()),
                (topic, json.dumps(GOOD).encode()),  # a duplicate
                (
                    mqtt.topic_for("7777A", prefix),
                    json.dumps({**GOOD, "station": "7777A", "name": None}).encode(),
                ),
                (topic, json.dumps({**GOOD, "hour": "2022-01-04T11:00:00+08:00"}).encode()),
            ],
        )
    finally:
        client.disconnect()
    assert subscriber.wait_idle(quiet=0.5, timeout=20)
    with platform.factory() as session:
        assert session.scalar(select(func.count()).select_from(Reading)) == 2
        reasons = sorted(session.scalars(select(DeadLetter.reason)))
    assert len(reasons) == 3
    assert reasons[0].startswith("malformed JSON")
    assert "negative concentration: pm2_5=-3" in reasons
    assert "unknown station 7777A" in reasons
    assert subscriber.stats.failures == 0


def test_replay_of_the_real_day_through_mqtt(
    platform: Platform, subscriber: mqtt.Subscriber, prefix: str
) -> None:
    sent = mqtt.replay(DAY, speed=0, prefix=prefix)
    assert sent == 1008
    assert subscriber.wait_idle(quiet=0.5, timeout=60)
    with platform.factory() as session:
        assert session.scalar(select(func.count()).select_from(Station)) == 42
        assert session.scalar(select(func.count()).select_from(Reading)) == 1007
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 1
    assert subscriber.stats.messages == 1008
