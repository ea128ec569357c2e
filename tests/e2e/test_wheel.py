"""`pip install .` (a wheel, not the editable checkout) gives a `portal-auth up` that starts the
whole system: every file it reads at run time is in the wheel."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 300.0  # Kafka, PostgreSQL and four services on a busy 2-core machine


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project's wheel installed; its bin directory.

    The wheel is built from a copy of the sources, so no earlier build output can slip in. The
    venv finds the dependencies (not the project) in the test environment's site-packages: the
    test is about what the wheel carries, and installing them again needs no network."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "tests", "benchmarks"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "dist"), str(source)], check=True, timeout=300)
    [wheel] = (tmp / "dist").glob("portal_auth-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--no-deps", str(wheel)], check=True, timeout=300)
    site = Path(subprocess.check_output([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


def test_the_wheel_carries_the_code_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.check_output([str(installed / "python"), "-c",
                                     "import portal_auth, shared, services.identity; print(portal_auth.__file__, shared.__file__)"],
                                    cwd=tmp_path, text=True)
    assert str(ROOT) not in where and str(installed.parent) in where


@pytest.fixture
def portal_auth_up(installed: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    env = {**os.environ, "PORTAL_AUTH_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_HOST", "ADMIN_TOKEN", "MAIL_TOKEN_KEY"):
        env.pop(name, None)  # its own infrastructure, as on a newcomer's machine
    process = subprocess.Popen([str(installed / "portal-auth"), "up"], cwd=tmp_path, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _line_matching(lines: queue.Queue[str], pattern: str, seen: list[str], timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; output:\n{''.join(seen)}")


def test_portal_auth_up_from_the_wheel_serves_the_demo_portal_and_stops(
        portal_auth_up: tuple[subprocess.Popen[str], queue.Queue[str]]) -> None:
    process, lines = portal_auth_up
    seen: list[str] = []
    port = int(_line_matching(lines, r"portal \(demo organization\):\s+http://demo\.localhost:(\d+)/login", seen, READY_TIMEOUT)[1])
    page = httpx.get(f"http://127.0.0.1:{port}/login", headers={"Host": "demo.localhost"}, timeout=30)
    assert page.status_code == 200 and "Sign in" in page.text
    process.send_signal(signal.SIGTERM)
    _line_matching(lines, r"portal-auth: stopped", seen, 120)
    assert process.wait(timeout=60) == 0
