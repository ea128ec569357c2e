"""`portal-auth replay`: the event log for auditors, as JSON lines or CSV; filters by time,
organization, email and type. Encrypted token fields are left out: an audit shows who did what
and when, never a link that would still work."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from shared.eventlog import LogReader
from shared.events import TOPICS, Envelope

FORMATS = ("jsonl", "csv")
# The CSV's columns: the envelope, who did it (admin events carry an actor), the account, and the
# rest of the event's data as one JSON object.
CSV_COLUMNS = ("occurred_at", "tenant", "type", "version", "producer", "event_id", "correlation_id", "actor", "email", "data")


@dataclass(frozen=True)
class Filter:
    tenant: str | None = None
    email: str | None = None
    types: frozenset[str] = frozenset()
    until: datetime | None = None

    def keeps(self, envelope: Envelope) -> bool:
        return ((self.tenant is None or envelope.tenant == self.tenant)
                and (self.email is None or envelope.data.get("email") == self.email)
                and (not self.types or envelope.type in self.types)
                and (self.until is None or envelope.occurred_at < self.until))


async def history(bootstrap: str, *, since: datetime | None = None, only: Filter = Filter(),
                  progress: bool = False) -> list[Envelope]:
    """The matching events of every topic up to its end as it is now, ordered by when they occurred."""
    say = (lambda n: print(f"replay: {n} events read", file=sys.stderr, flush=True)) if progress else None
    async with LogReader(bootstrap, TOPICS, since=since, client_id="portal-auth-replay", progress=say) as log:
        return [e for e in await log.read_to_end() if only.keeps(e)]


def audit_record(envelope: Envelope) -> dict[str, Any]:
    """The envelope as the audit shows it: every field but the encrypted ones."""
    record = envelope.model_dump(mode="json")
    record["data"] = {name: value for name, value in record["data"].items() if not name.endswith("_encrypted")}
    return record


def write_csv(records: list[dict[str, Any]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        data = dict(record["data"])
        row = {column: record.get(column) for column in CSV_COLUMNS}
        # the actor may travel in the event's data or in its envelope
        row.update(actor=_actor(data.pop("actor", record.get("actor"))), email=data.pop("email", None),
                   data=json.dumps(data, sort_keys=True, ensure_ascii=False))
        writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _actor(actor: Any) -> str | None:
    if actor is None or isinstance(actor, str):
        return actor
    return json.dumps(actor, sort_keys=True, ensure_ascii=False)


async def replay(bootstrap: str, *, since: datetime | None, only: Filter, out: TextIO = sys.stdout,
                 format: str = "jsonl") -> int:
    """Write the matching events as JSON lines or CSV; returns how many."""
    records = [audit_record(e) for e in await history(bootstrap, since=since, only=only, progress=True)]
    if format == "csv":
        write_csv(records, out)
    else:
        for record in records:
            out.write(json.dumps(record, sort_keys=True) + "\n")
    return len(records)
