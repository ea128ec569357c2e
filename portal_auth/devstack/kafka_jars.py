"""Apache Kafka's jars, resolved by Maven once into a cache, and a JVM class-data archive of them.

The jars go to ``<cache root>/kafka-<version>/lib``, the cache root being
``$PORTAL_AUTH_CACHE`` or ``~/.cache/portal-auth``. kafka_pom.xml (next to this file, package data) pins the version
(its bytes are the cache key: the comment in it still names its old path, infra/kafka/pom.xml)
and is the only input: when it changes, the jars are resolved again.
"""

from __future__ import annotations

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

from ._proc import DevstackError, ManagedProcess

__all__ = [
    "KAFKA_POM", "ClassDataArchive", "cache_root", "jar_cache_lock", "jars_are_cached", "kafka_version",
    "progress", "resolve_kafka_jars",
]

KAFKA_POM = Path(__file__).resolve().parent / "kafka_pom.xml"
MAVEN_TIMEOUT_S = 900.0
_PROGRESS_EVERY_S = 15.0


def cache_root() -> Path:
    """Where downloaded things are kept between runs: $PORTAL_AUTH_CACHE or ~/.cache/portal-auth."""
    override = os.environ.get("PORTAL_AUTH_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "portal-auth"


def kafka_version() -> str:
    """The Kafka version pinned in kafka_pom.xml."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(KAFKA_POM).getroot().find("m:properties/m:kafka.version", namespace)
    if node is None or not node.text:
        raise DevstackError(f"{KAFKA_POM} has no <kafka.version> property")
    return node.text.strip()


def jars_are_cached() -> bool:
    # The stamp holds the pom's digest: a changed pom (say, another log4j) resolves again.
    stamp = _stamp(_jar_dir())
    return stamp.is_file() and stamp.read_text().strip() == _pom_digest()


def resolve_kafka_jars() -> Path:
    """Resolve the broker's jars with Maven unless cached; return the directory holding them.

    Prints progress lines to stderr while Maven works (30-50 s with an empty Maven
    repository); returns at once when the jars are cached.
    """
    lib = _jar_dir()
    if jars_are_cached():
        return lib
    with jar_cache_lock():
        if not jars_are_cached():  # another process may have finished while we waited
            _resolve_jars(lib)
    return lib


def _jar_dir() -> Path:
    return cache_root() / f"kafka-{kafka_version()}" / "lib"


def _pom_digest() -> str:
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()


def _stamp(lib: Path) -> Path:
    return lib / ".resolved-from-pom"


@contextmanager
def jar_cache_lock() -> Iterator[None]:
    """Held while the cache is written, so that concurrent test runs take turns."""
    path = _jar_dir().parent / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
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
    argv = [mvn, "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
    maven = ManagedProcess("maven", argv, lib.parent / "maven.log", stop_timeout=5)
    progress(f"resolving Apache Kafka {kafka_version()} jars with Maven into {lib} (first run only)")
    started = time.monotonic()
    maven.start()
    code = _wait_with_progress(maven, started)
    maven.stop()
    if code != 0:
        raise DevstackError(maven.describe_failure("resolving Kafka jars with Maven failed"))
    _stamp(staging).write_text(_pom_digest() + "\n")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)  # readers see either no jars or all of them
    progress(f"Kafka jars ready ({len(list(lib.glob('*.jar')))} jars, {time.monotonic() - started:.0f} s)")


def _wait_with_progress(maven: ManagedProcess, started: float) -> int | None:
    next_report = started + _PROGRESS_EVERY_S
    while maven.is_running():
        now = time.monotonic()
        if now - started > MAVEN_TIMEOUT_S:
            maven.stop()
            raise DevstackError(maven.describe_failure("resolving Kafka jars timed out"))
        if now >= next_report:
            progress(f"... Maven still resolving ({now - started:.0f} s)")
            next_report += _PROGRESS_EVERY_S
        time.sleep(0.2)
    return maven.returncode()


def progress(message: str) -> None:
    """One line on stderr about slow one-time work, so a first run does not look hung."""
    print(f"portal-auth devstack: {message}", file=sys.stderr, flush=True)


class ClassDataArchive:
    """Where the HotSpot class-data-sharing archive of the broker's classes is kept.

    Loading and verifying ~45 jars' classes is most of the broker's start time on two
    cores; mapping them from an archive instead halves it (measured: a restart takes 2.1 s
    instead of 3.6-4.1 s until the broker answers).
    An archive works only with the JVM build that wrote it and the same jars, so it is
    keyed on the JVM binary and kept inside the jar directory (replaced whole when the
    jars are resolved again).
    """

    def __init__(self, lib: Path, java: str) -> None:
        real_java = Path(os.path.realpath(java))
        key = hashlib.sha256(f"{real_java}:{real_java.stat().st_mtime_ns}".encode()).hexdigest()[:16]
        self.path = lib / f"broker-{key}.jsa"
        #: Left when building the archive failed, so that no later start tries again.
        self.failed_marker = lib / f"broker-{key}.jsa.failed"

    def settled(self) -> bool:
        """Built, or known not to build here."""
        return self.path.is_file() or self.failed_marker.is_file()

    def read_options(self) -> list[str]:
        """JVM options that use the archive when there is one."""
        return [f"-XX:SharedArchiveFile={self.path}"] if self.path.is_file() else []

    def write_options(self, pending: Path) -> list[str]:
        """JVM options that write the archive of the classes loaded to ``pending`` at exit."""
        # The dump warns about every class it cannot archive; nobody needs to read that.
        return [f"-XX:ArchiveClassesAtExit={pending}", "-Xlog:cds*=off"]

    def new_pending(self) -> Path:
        """A private file for a JVM to write the archive to (called under the cache lock, so
        any earlier one is left from a killed run and goes)."""
        for stale in self.path.parent.glob(f".{self.path.name}.*"):
            stale.unlink(missing_ok=True)
        return self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")

    def adopt(self, pending: Path, returncode: int | None) -> bool:
        """Keep what a JVM wrote to ``pending`` if it exited cleanly (0, or 143 on SIGTERM)."""
        if returncode in (0, 143) and pending.is_file() and pending.stat().st_size > 0:
            os.replace(pending, self.path)  # atomic: a start never maps half an archive
            return True
        pending.unlink(missing_ok=True)
        return False
