"""The bcrypt workers: off the event loop, and below it in priority."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from services.identity.handlers import HASH_NICENESS, PasswordHasher


def bcrypt_threads_niceness() -> list[int]:
    """The niceness of each of this process's bcrypt worker threads, as the kernel has it."""
    return [int(Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()[16])
            for thread in threading.enumerate() if thread.name.startswith("bcrypt")]


async def test_the_bcrypt_workers_run_below_the_event_loop() -> None:
    hasher = PasswordHasher(4, workers=2)
    hashed = await hasher.hash("a long passphrase")
    assert await hasher.verify("a long passphrase", hashed)
    assert not await hasher.verify("another passphrase", hashed)
    niceness = bcrypt_threads_niceness()
    assert niceness and all(n == os.getpriority(os.PRIO_PROCESS, 0) + HASH_NICENESS for n in niceness), niceness
