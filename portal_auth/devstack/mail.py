"""Client side of the mail catcher: start it, read what it caught, make it fail."""

from __future__ import annotations

import os
import sys
import time
from email.message import EmailMessage
from pathlib import Path

from ._mailfiles import FAIL_WITH_FILE, message_paths, read_message
from ._net import port_accepts, require_free_port
from ._proc import ManagedProcess, wait_until

__all__ = ["MailCatcherHandle", "start_mail_catcher"]

READY_TIMEOUT_S = 30.0
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class MailCatcherHandle:
    """A running mail catcher; messages are read straight from its directory."""

    def __init__(self, process: ManagedProcess, *, mail_dir: Path, smtp_port: int, web_port: int) -> None:
        self.smtp_host = "127.0.0.1"
        self.smtp_port = smtp_port
        self.web_port = web_port
        self.inbox_url = f"http://127.0.0.1:{web_port}/"
        self.mail_dir = mail_dir
        self.log_path = process.log_path
        self._process = process

    def __repr__(self) -> str:
        return f"MailCatcherHandle(smtp={self.smtp_host}:{self.smtp_port}, inbox_url={self.inbox_url!r})"

    def messages(self) -> list[EmailMessage]:
        """Every message caught so far, oldest first, with the envelope in X-Envelope-From/-To."""
        return [read_message(path) for path in message_paths(self.mail_dir)]

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Wait until at least ``count`` messages have arrived (services send asynchronously)."""
        deadline = time.monotonic() + timeout
        while (arrived := len(message_paths(self.mail_dir))) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{arrived} of {count} messages arrived within {timeout} s")
            time.sleep(0.05)
        return self.messages()

    def clear(self) -> None:
        """Forget every message caught so far."""
        for path in message_paths(self.mail_dir):
            path.unlink(missing_ok=True)

    def fail_with(self, code: int | None) -> None:
        """Answer every DATA with this SMTP code (e.g. 451, 550) until called with None."""
        control = self.mail_dir / FAIL_WITH_FILE
        if code is None:
            control.unlink(missing_ok=True)
            return
        if not 400 <= code <= 599:
            raise ValueError(f"an SMTP failure code is 4xx or 5xx, not {code}")
        partial = control.with_name(control.name + ".partial")
        partial.write_text(f"{code}\n")
        partial.replace(control)  # the catcher never reads a half-written code

    def stop(self) -> None:
        self._process.stop()

    def is_running(self) -> bool:
        return self._process.is_running()


def start_mail_catcher(workdir: Path, *, smtp_port: int = 1025, web_port: int = 8025) -> MailCatcherHandle:
    """Start the catcher with its messages in ``workdir/mail``; return once both ports answer."""
    workdir = workdir.resolve()
    mail_dir = workdir / "mail"
    mail_dir.mkdir(parents=True, exist_ok=True)
    (mail_dir / FAIL_WITH_FILE).unlink(missing_ok=True)  # a failure mode left over must not leak in
    argv = [sys.executable, "-m", "portal_auth.devstack.mailcatcher", "--dir", str(mail_dir),
            "--smtp-port", str(smtp_port), "--web-port", str(web_port)]
    require_free_port(smtp_port, "the mail catcher's SMTP server")
    require_free_port(web_port, "the mail catcher's web inbox")
    process = ManagedProcess("mailcatcher", argv, workdir / "mailcatcher.log", env=_child_env(), stop_timeout=5)
    process.start()
    wait_until(lambda: port_accepts(smtp_port) and port_accepts(web_port), process=process,
               timeout=READY_TIMEOUT_S, what=f"mail catcher on ports {smtp_port}/{web_port}")
    return MailCatcherHandle(process, mail_dir=mail_dir, smtp_port=smtp_port, web_port=web_port)


def _child_env() -> dict[str, str]:
    # The child must import this package even when it is not installed, from any cwd.
    paths = [str(_PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}
