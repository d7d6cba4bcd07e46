"""``slipstream doctor`` on a real broker, and its checks as a pure function."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from slipstream.app.doctor import TopicInfo, check
from slipstream.config import DLQ_TOPIC, EVENTS_TOPIC, FRAMES_TOPIC, RAW_TOPIC
from slipstream.testing.broker import TansuBroker
from tests.e2e.test_run import _env

HOUR_MS = 3_600_000


def good_topics() -> list[TopicInfo]:
    return [
        TopicInfo(RAW_TOPIC, 8, 3, 24 * HOUR_MS, "delete"),
        TopicInfo(FRAMES_TOPIC, 8, 3, 12 * HOUR_MS, "delete"),
        TopicInfo(EVENTS_TOPIC, 1, 3, -1, "delete"),
    ]


def test_advised_layout_has_no_findings() -> None:
    assert check(good_topics(), brokers=3) == []


def test_findings_of_a_misconfigured_cluster() -> None:
    topics = [
        TopicInfo(RAW_TOPIC, 8, 1, 2 * HOUR_MS, "delete"),
        TopicInfo(FRAMES_TOPIC, 4, 1, HOUR_MS, "compact"),
        TopicInfo(DLQ_TOPIC, 8, 1, None, None),
    ]
    found = {(f.level, f.topic, f.message.split(" ")[0]) for f in check(topics, brokers=3)}
    assert ("error", FRAMES_TOPIC, "retention.ms") in found
    assert ("error", FRAMES_TOPIC, "cleanup.policy") in found
    assert ("warning", FRAMES_TOPIC, "4") in found  # not equal to raw
    assert ("warning", RAW_TOPIC, "retention.ms") in found
    assert ("warning", EVENTS_TOPIC, "missing:") in found
    assert ("warning", DLQ_TOPIC, "replication") in found


def test_events_need_one_partition() -> None:
    topics = [*good_topics()[:2], TopicInfo(EVENTS_TOPIC, 4, 3, -1, "delete")]
    [finding] = check(topics, brokers=3)
    assert (finding.level, finding.topic) == ("error", EVENTS_TOPIC)
    assert "1 partition" in finding.message


async def create(bootstrap: str, topics: list[NewTopic]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(topics)
    finally:
        await admin.close()


def doctor(bootstrap: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slipstream", "doctor", "--kafka", bootstrap],
        capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip


@pytest.mark.kafka
def test_doctor_reports_a_misconfigured_topic(fresh_kafka_broker: TansuBroker) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    asyncio.run(create(bootstrap, [
        NewTopic(RAW_TOPIC, 8, 1, topic_configs={"retention.ms": str(24 * HOUR_MS)}),
        NewTopic(FRAMES_TOPIC, 8, 1, topic_configs={"retention.ms": str(HOUR_MS)}),
        NewTopic(EVENTS_TOPIC, 1, 1, topic_configs={"retention.ms": str(12 * HOUR_MS)}),
    ]))  # fmt: skip
    out = doctor(bootstrap)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"connected to {bootstrap} (PLAINTEXT)" in out.stdout
    assert f"{FRAMES_TOPIC}  8           1         1 h" in out.stdout, out.stdout
    assert f"error: {FRAMES_TOPIC}: retention.ms is 1 h, below 4 h" in out.stdout
    assert "--add-config retention.ms=43200000" in out.stdout
    assert "1 error(s), 0 warning(s)" in out.stdout, out.stdout


@pytest.mark.kafka
def test_doctor_passes_the_advised_layout(fresh_kafka_broker: TansuBroker) -> None:
    bootstrap = fresh_kafka_broker.bootstrap
    asyncio.run(create(bootstrap, [
        NewTopic(name, count, 1, topic_configs={"retention.ms": str(24 * HOUR_MS)})
        for name, count in ((RAW_TOPIC, 8), (FRAMES_TOPIC, 8), (EVENTS_TOPIC, 1))
    ]))  # fmt: skip
    out = doctor(bootstrap)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 error(s), 0 warning(s)" in out.stdout, out.stdout


def test_doctor_cannot_connect_exits_2() -> None:
    from slipstream.testing.broker import free_port

    server = f"127.0.0.1:{free_port()}"
    out = doctor(server)
    assert out.returncode == 2
    assert f"{server}: connection refused" in out.stderr, out.stderr
