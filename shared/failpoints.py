"""Crash points for the fault-injection run (`make chaos`): a process kills itself with SIGKILL
at a named point of its work, the instant it is told to, so the run can crash an outbox relay
between sending a batch and marking it sent, or a consumer between committing an event's effect
and committing its offset. Nothing else reaches those instants from outside.

A point is armed by creating the file ``$PORTAL_AUTH_FAILPOINTS/<name>``; the crash removes it
first, so it fires once. Without that variable (always, outside the chaos run) ``crash_here``
does nothing but one lookup.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

_DIRECTORY = os.environ.get("PORTAL_AUTH_FAILPOINTS")


def crash_here(name: str) -> None:
    if _DIRECTORY is None:
        return
    try:
        Path(_DIRECTORY, name).unlink()
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
