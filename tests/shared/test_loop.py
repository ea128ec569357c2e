"""The background loop's wakes: at once, or within a while so that one round takes several."""

from __future__ import annotations

import asyncio
import time

from shared.loop import PollLoop

LINGER = 2.0


class Rounds:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> float | None:
        self.count += 1
        return None

    async def reach(self, count: int, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while self.count < count:
            assert time.monotonic() < deadline, f"{self.count} rounds, not {count}"
            await asyncio.sleep(0.01)


async def test_lazy_wakes_make_one_round_and_a_prompt_wake_takes_them_along() -> None:
    rounds = Rounds()
    loop = PollLoop("test", rounds, idle=60.0)
    async with loop.running():
        await rounds.reach(1)  # the first round, at start
        for _ in range(5):
            loop.wake_within(LINGER)
        await asyncio.sleep(0)
        assert rounds.count == 1, "a lazy wake waits"
        await rounds.reach(2)
        await asyncio.sleep(LINGER + 0.5)
        assert rounds.count == 2, "five lazy wakes made one round"

        loop.wake_within(LINGER)
        loop.wake()  # something urgent: its round comes now and takes the lazy work along
        await rounds.reach(3)
        await asyncio.sleep(LINGER + 0.5)
        assert rounds.count == 3, "the lazy wake left no round of its own after the prompt one"
