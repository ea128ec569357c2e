"""The local infrastructure really starts, serves its protocol, and stops."""

from __future__ import annotations

import asyncio
import shutil
import socket
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from portal_auth.devstack import (
    DevstackError,
    KafkaHandle,
    PausableService,
    Service,
    free_port,
    start_kafka,
    start_mail_catcher,
    start_postgres,
)
from portal_auth.devstack._net import port_accepts

KAFKA_TIMEOUT_S = 30.0


# --- Kafka helpers ------------------------------------------------------------------------


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def _partition_count(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return 0
        (description,) = await admin.describe_topics([topic])
        return len(description["partitions"])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _consume_one(bootstrap: str, topic: str) -> tuple[bytes | None, bytes | None]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), KAFKA_TIMEOUT_S)
        return record.key, record.value
    finally:
        await consumer.stop()


def _round_trip(kafka: KafkaHandle, topic: str) -> None:
    asyncio.run(_create_topic(kafka.bootstrap, topic, partitions=6))
    assert asyncio.run(_partition_count(kafka.bootstrap, topic)) == 6
    asyncio.run(_produce(kafka.bootstrap, topic, b"user-1", b"hello"))
    assert asyncio.run(_consume_one(kafka.bootstrap, topic)) == (b"user-1", b"hello")


# --- Apache Kafka -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaHandle]:
    handle = start_kafka(tmp_path_factory.mktemp("kafka"), port=free_port())
    yield handle
    handle.stop()


def test_apache_kafka_creates_topic_and_round_trips_a_message(apache_kafka: KafkaHandle) -> None:
    assert apache_kafka.bootstrap == f"127.0.0.1:{apache_kafka.port}"
    assert isinstance(apache_kafka, PausableService)
    _round_trip(apache_kafka, "devstack.round-trip")


def test_apache_kafka_keeps_topics_and_messages_across_pause_and_resume(apache_kafka: KafkaHandle) -> None:
    topic = "devstack.pause-resume"
    asyncio.run(_create_topic(apache_kafka.bootstrap, topic, partitions=6))
    asyncio.run(_produce(apache_kafka.bootstrap, topic, b"k", b"before the outage"))

    apache_kafka.pause()
    assert not apache_kafka.is_running()
    assert not port_accepts(apache_kafka.port)

    apache_kafka.resume()
    assert apache_kafka.is_running()
    assert asyncio.run(_partition_count(apache_kafka.bootstrap, topic)) == 6
    assert asyncio.run(_consume_one(apache_kafka.bootstrap, topic)) == (b"k", b"before the outage")


def test_apache_kafka_logs_to_its_workdir(apache_kafka: KafkaHandle) -> None:
    assert apache_kafka.log_path == apache_kafka.workdir / "kafka.log"
    assert "Kafka Server started" in apache_kafka.log_path.read_text()


def test_without_java_kafka_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DevstackError, match="apt-get install openjdk-17-jre-headless"):
        start_kafka(tmp_path, port=free_port())


# --- PostgreSQL ---------------------------------------------------------------------------


def test_postgres_serves_the_portal_auth_database(tmp_path: Path) -> None:
    port = free_port()
    postgres = start_postgres(tmp_path, port=port)
    try:
        assert postgres.url == f"postgresql+asyncpg://portal_auth:portal_auth@127.0.0.1:{port}/portal_auth"

        async def query() -> tuple[int, str]:
            connection = await asyncpg.connect(postgres.dsn)
            try:
                return await connection.fetchval("select 1"), await connection.fetchval("select current_database()")
            finally:
                await connection.close()

        assert asyncio.run(query()) == (1, "portal_auth")
    finally:
        postgres.stop()
        postgres.stop()  # idempotent
    assert not postgres.is_running()
    assert not port_accepts(port)


# --- Mail catcher -------------------------------------------------------------------------


def _mail(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Portal <noreply@portal.test>"
    message["To"] = "alice@example.com"
    message["Subject"] = subject
    message.set_content("Confirm your address: https://portal.test/verify?token=abc\n")
    return message


def _send(port: int, message: EmailMessage, recipients: list[str]) -> None:
    asyncio.run(aiosmtplib.send(message, hostname="127.0.0.1", port=port, recipients=recipients))


def test_mail_catcher_stores_messages_and_fails_on_request(tmp_path: Path) -> None:
    catcher = start_mail_catcher(tmp_path, smtp_port=free_port(), web_port=free_port())
    try:
        assert isinstance(catcher, Service)
        _send(catcher.smtp_port, _mail("Welcome"), ["alice@example.com", "audit@portal.test"])
        _send(catcher.smtp_port, _mail("Second"), ["alice@example.com"])

        messages = catcher.messages()
        assert [m["Subject"] for m in messages] == ["Welcome", "Second"]
        assert messages[0]["X-Envelope-To"] == "alice@example.com, audit@portal.test"
        assert "token=abc" in messages[0].get_content()

        inbox = urllib.request.urlopen(catcher.inbox_url, timeout=5).read().decode()
        assert "Welcome" in inbox and "Second" in inbox

        catcher.fail_with(451)
        with pytest.raises(aiosmtplib.SMTPResponseException) as failure:
            _send(catcher.smtp_port, _mail("Refused"), ["alice@example.com"])
        assert failure.value.code == 451
        assert len(catcher.messages()) == 2

        catcher.fail_with(None)
        _send(catcher.smtp_port, _mail("Accepted again"), ["alice@example.com"])
        assert catcher.wait_for_messages(3)[-1]["Subject"] == "Accepted again"
    finally:
        catcher.stop()
    assert not catcher.is_running()


def test_a_taken_port_is_refused_instead_of_probing_someone_elses_server(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with pytest.raises(DevstackError, match="already listens"):
            start_mail_catcher(tmp_path, smtp_port=taken, web_port=free_port())
        with pytest.raises(DevstackError, match="already listens"):
            start_kafka(tmp_path, port=taken)
