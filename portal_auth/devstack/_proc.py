"""Child processes that log to a file and never outlive the Python process that started them.

Three layers make sure nothing is left running:
  * ``start_new_session`` keeps a terminal's Ctrl-C away from the children, so the
    parent decides the shutdown order itself;
  * an ``atexit`` hook stops every process still running on a normal interpreter exit;
  * ``PR_SET_PDEATHSIG`` lets the kernel signal the child if the parent is killed
    outright (SIGKILL, OOM), when no Python code gets the chance to run.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["DevstackError", "ManagedProcess", "log_tail", "wait_until"]

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
# Resolved before any fork: the pre-exec hook must not load libraries in the child.
_prctl = _libc.prctl

# Insertion-ordered (a dict used as a set) so the exit hook can stop the newest first.
_running: dict[ManagedProcess, None] = {}
_running_lock = threading.Lock()


class DevstackError(RuntimeError):
    """A local service could not be prepared, started or reached."""


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except FileNotFoundError:
        return f"(no log file at {path})"


def _death_signal_hook(sig: signal.Signals, parent_pid: int) -> Callable[[], None]:
    def hook() -> None:
        _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork() and prctl(): then nobody would signal us.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sig)

    return hook


class ManagedProcess:
    """One long-running child process whose output goes to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 20.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.user = user
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def start(self) -> None:
        if self.is_running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # Marks where each run begins in a log that several starts (resume) append to.
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} devstack starts {self.name}\n".encode())
            log.flush()
            self._popen = self._spawn(log)
        with _running_lock:
            _running[self] = None

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        # The kernel sends the death signal when the *thread* that forked exits, so it is
        # only safe from the main thread; elsewhere the atexit hook alone has to do.
        hook = None
        if threading.current_thread() is threading.main_thread():
            hook = _death_signal_hook(self.stop_signal, os.getpid())
        return subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            user=self.user,
            group=_primary_group(self.user),
            extra_groups=[] if self.user else None,
            preexec_fn=hook,
        )

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def wait(self, timeout: float) -> int | None:
        """Wait for a short-lived process to exit; its exit code, or None if it is still running."""
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Signal, wait up to ``stop_timeout``, then kill the whole process group. Idempotent."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            _signal(popen.pid, self.stop_signal)
            _wait_for_exit_unreaped(popen.pid, self.stop_timeout)
            # Until the leader is reaped its pid, and so its group id, cannot be anyone else's:
            # this kills the leader if it is still running and any helper it left behind.
            _kill_group(popen.pid)
            popen.wait(10)
        with _running_lock:
            _running.pop(self, None)

    def describe_failure(self, what: str) -> str:
        code = self.returncode()
        state = "is still running" if code is None else f"exited with code {code}"
        return f"{what}: {self.name} {state}; last lines of {self.log_path}:\n{log_tail(self.log_path)}"


def wait_until(
    ready: Callable[[], bool], *, process: ManagedProcess, timeout: float, what: str
) -> float:
    """Poll ``ready`` until it is true; fail fast if the process dies. Returns seconds waited."""
    started = time.monotonic()
    delay = 0.05
    while True:
        if ready():
            return time.monotonic() - started
        if not process.is_running():
            raise DevstackError(process.describe_failure(f"{what} failed"))
        if time.monotonic() - started > timeout:
            process.stop()
            raise DevstackError(process.describe_failure(f"{what} timed out after {timeout:.0f} s"))
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _primary_group(user: str | None) -> int | None:
    return None if user is None else pwd.getpwnam(user).pw_gid


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_for_exit_unreaped(pid: int, timeout: float) -> bool:
    """Wait for a child to exit but leave it a zombie (WNOWAIT); True if it exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True  # already reaped elsewhere
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@atexit.register
def _stop_all() -> None:
    # Newest first: a service may depend on one started before it.
    with _running_lock:
        leftovers = list(reversed(_running))
    for process in leftovers:
        process.stop()
