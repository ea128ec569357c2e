"""`portal-auth replay`: the event log as JSON lines, for auditors; filters by time, organization, email."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from shared.eventlog import LogReader
from shared.events import TOPICS, Envelope


@dataclass(frozen=True)
class Filter:
    tenant: str | None = None
    email: str | None = None
    types: frozenset[str] = frozenset()

    def keeps(self, envelope: Envelope) -> bool:
        return ((self.tenant is None or envelope.tenant == self.tenant)
                and (self.email is None or envelope.data.get("email") == self.email)
                and (not self.types or envelope.type in self.types))


async def history(bootstrap: str, *, since: datetime | None = None, only: Filter = Filter(),
                  progress: bool = False) -> list[Envelope]:
    """The matching events of every topic up to its end as it is now, ordered by when they occurred."""
    say = (lambda n: print(f"replay: {n} events read", file=sys.stderr, flush=True)) if progress else None
    async with LogReader(bootstrap, TOPICS, since=since, client_id="portal-auth-replay", progress=say) as log:
        return [e for e in await log.read_to_end() if only.keeps(e)]


async def replay(bootstrap: str, *, since: datetime | None, only: Filter, out: TextIO = sys.stdout) -> int:
    """Write the matching events as JSON lines; returns how many."""
    matching = await history(bootstrap, since=since, only=only, progress=True)
    for envelope in matching:
        out.write(json.dumps(envelope.model_dump(mode="json"), sort_keys=True) + "\n")
    return len(matching)
