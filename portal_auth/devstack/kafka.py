"""A single local Kafka broker: Apache Kafka in KRaft mode, from Maven-resolved jars on Java 17.

It is the only broker offered: every broker the project starts must pass the whole test suite.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from ._net import free_port, kafka_broker_count, require_free_port
from ._proc import DevstackError, ManagedProcess, wait_until
from .kafka_jars import ClassDataArchive, jar_cache_lock, progress, resolve_kafka_jars

__all__ = ["KafkaHandle", "ensure_kafka_jars", "start_kafka"]

READY_TIMEOUT_S = 90.0
FORMAT_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# Writing the class-data archive at exit takes 5 s on a quiet machine, 30 s on a busy one.
ARCHIVE_STOP_TIMEOUT_S = 300.0
_JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx512m",
    # One small heap on two cores: the serial collector starts fastest and needs no GC threads.
    "-XX:+UseSerialGC",
    # C1 only: far less JIT work while starting (measured: about 10 s -> 4 s until ready);
    # a dev broker never needs peak throughput.
    "-XX:TieredStopAtLevel=1",
    # Nothing outside the workdir: no /tmp/hsperfdata_* files (jps/jstat are not needed).
    "-XX:-UsePerfData",
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

    def __init__(self, process: ManagedProcess, *, port: int, workdir: Path) -> None:
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.workdir = workdir
        self.log_path = process.log_path
        #: Seconds the last start or resume took until the broker answered metadata requests.
        self.startup_seconds = 0.0
        self._process = process

    def __repr__(self) -> str:
        return f"KafkaHandle(bootstrap={self.bootstrap!r})"

    def start(self) -> None:
        """Start the broker (if it is not running) and wait until it answers metadata requests."""
        if self._process.is_running():
            return
        started = time.monotonic()
        require_free_port(self.port, "Kafka")
        self._process.start()
        wait_until(lambda: kafka_broker_count(self.port) > 0, process=self._process,
                   timeout=READY_TIMEOUT_S, what=f"Kafka on {self.bootstrap}")
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), wait, then kill. Idempotent."""
        self._process.stop()

    def pause(self) -> None:
        """Stop the broker but keep its data, so that ``resume`` brings the same topics back."""
        self._process.stop()

    def resume(self) -> None:
        """Start the paused broker again on the same port and data; return once it is ready."""
        self.start()

    def is_running(self) -> bool:
        return self._process.is_running()


def start_kafka(workdir: Path, *, port: int = 9092) -> KafkaHandle:
    """Start a broker on 127.0.0.1:``port`` with its files under ``workdir``; wait until ready.

    Needs `java` (17 or later) on PATH, and `mvn` the first time, to fetch the jars."""
    java = _java()
    require_free_port(port, "Kafka")  # before any slow preparation
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    handle = KafkaHandle(_apache_process(workdir, port, java=java, lib=ensure_kafka_jars()), port=port, workdir=workdir)
    handle.start()
    return handle


def ensure_kafka_jars() -> Path:
    """Do Apache Kafka's one-time preparation now; return the directory of its jars.

    Resolves the jars with Maven (once per kafka_pom.xml) and, where `java` is on PATH, builds
    the class-data archive that halves every later broker start (once per JVM). Both are
    cached, so this returns at once afterwards; while working it prints progress lines.
    """
    lib = resolve_kafka_jars()
    java = shutil.which("java")
    if java is not None:
        _ensure_class_archive(lib, java)
    return lib


# --- Apache Kafka ---------------------------------------------------------------------------


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise DevstackError("Kafka needs Java 17 on PATH: apt-get install openjdk-17-jre-headless (or run make up, which installs it)")
    return java


def _apache_process(workdir: Path, port: int, *, java: str, lib: Path,
                    write_archive_to: Path | None = None) -> ManagedProcess:
    """Configure (and on first use format) a KRaft broker+controller in ``workdir``."""
    data_dir = workdir / "kafka-data"
    properties = workdir / "kafka.properties"
    log4j = workdir / "kafka-log4j2.xml"
    controller_port = _previous_controller_port(properties, data_dir) or free_port()
    properties.write_text(_server_properties(port, controller_port, data_dir))
    log4j.write_text(_LOG4J2_XML)
    jvm = [java, *_JVM_OPTIONS, f"-XX:ErrorFile={workdir}/kafka-jvm-crash-%p.log",
           f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*"]
    archive = ClassDataArchive(lib, java)
    if not (data_dir / "meta.properties").is_file():
        _format_storage([*jvm, *archive.read_options()], properties, workdir / "kafka.log")
    class_data = archive.write_options(write_archive_to) if write_archive_to else archive.read_options()
    argv = [*jvm, *class_data, "kafka.Kafka", str(properties)]
    return ManagedProcess("kafka", argv, workdir / "kafka.log", stop_timeout=STOP_TIMEOUT_S)


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
    code = tool.wait(timeout=FORMAT_TIMEOUT_S)
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


def _ensure_class_archive(lib: Path, java: str) -> None:
    archive = ClassDataArchive(lib, java)
    if archive.settled():
        return
    with jar_cache_lock():
        if archive.settled():  # built by another process while we waited
            return
        started = time.monotonic()
        progress("building the broker's class-data archive (once; makes every later start about 2x faster)")
        try:
            _build_class_archive(archive, lib, java)
        except DevstackError as error:
            archive.failed_marker.write_text(f"{error}\n")
            progress(f"no class-data archive, brokers start without one: {str(error).splitlines()[0]}")
            return
        progress(f"class-data archive ready ({time.monotonic() - started:.0f} s)")


def _build_class_archive(archive: ClassDataArchive, lib: Path, java: str) -> None:
    """Start and stop a throwaway broker that writes the archive of the classes it loaded."""
    pending = archive.new_pending()
    with tempfile.TemporaryDirectory(prefix="portal-auth-kafka-archive-") as scratch:
        workdir, port = Path(scratch), free_port()
        process = _apache_process(workdir, port, java=java, lib=lib, write_archive_to=pending)
        process.stop_timeout = ARCHIVE_STOP_TIMEOUT_S
        broker = KafkaHandle(process, port=port, workdir=workdir)
        broker.start()
        broker.stop()
        if not archive.adopt(pending, process.returncode()):
            raise DevstackError(process.describe_failure("the broker wrote no class-data archive"))
