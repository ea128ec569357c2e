"""`portal-auth`: the one command for people who run the system."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from datetime import datetime

from portal_auth import DEFAULT_PORTS, SERVICES


def serve(args: argparse.Namespace) -> int:
    """Run one service: its migrations (serialized across replicas), then its HTTP and Kafka sides."""
    import uvicorn

    from shared.migrations import upgrade
    from shared.runtime import configure_logging

    bootstrap = importlib.import_module(f"services.{args.service}.bootstrap")
    app = bootstrap.create_app()
    settings = app.state.runtime.settings
    configure_logging(settings.log_level)
    if not args.no_migrate:
        upgrade(args.service, settings.database_url)
    uvicorn.run(app, host=args.host, port=args.port or DEFAULT_PORTS[args.service], log_level="warning",
                proxy_headers=False, access_log=False, loop="uvloop", http="httptools")
    return 0


def migrate(args: argparse.Namespace) -> int:
    from shared.migrations import upgrade
    from shared.settings import ConnectionSettings

    url = ConnectionSettings().database_url
    for service in args.services or list(SERVICES):
        upgrade(service, url)
        print(f"{service}: migrated")
    return 0


def up(args: argparse.Namespace) -> int:
    from portal_auth.up import up as run_up

    return run_up()


def asyncapi(args: argparse.Namespace) -> int:
    from shared.asyncapi import render

    text = render()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w") as out:
            out.write(text)
        print(f"wrote {args.output}")
    return 0


def unlock(args: argparse.Namespace) -> int:
    from portal_auth.operator import account_path, admin_client, fail

    with admin_client("lockout") as client:
        answer = client.delete(account_path(args.org, args.email))
    if answer.status_code != 204:
        raise fail(answer)
    print(f"unlocked {args.email} in {args.org}")
    return 0


def diagnose(args: argparse.Namespace) -> int:
    from portal_auth.diagnose import diagnose as run_diagnose

    for line in run_diagnose(args.org, args.email, bootstrap=_bootstrap()):
        print(line)
    return 0


def replay(args: argparse.Namespace) -> int:
    import asyncio

    from aiokafka.errors import KafkaError

    from portal_auth.replay import Filter, replay as run_replay

    if args.rebuild:
        from portal_auth.rebuild import rebuild_copies
        from services.lockout.rebuild import rebuild
        from shared.replay import RebuildNotSettled
        from shared.settings import ConnectionSettings

        print(f"replay: rebuilding {args.rebuild}'s state from the event log ...", file=sys.stderr, flush=True)
        url, bootstrap = ConnectionSettings().database_url, _bootstrap()
        try:
            if args.rebuild == "lockout":
                summary = asyncio.run(rebuild(url, bootstrap, replace=args.replace))
            else:
                summary = asyncio.run(rebuild_copies(args.rebuild, url, bootstrap, replace=args.replace))
        except RebuildNotSettled as exc:
            raise SystemExit(f"error: {exc}") from None
        print(json.dumps(summary.as_dict(), indent=2))
        return 0 if summary.equal or summary.replaced else 1
    since, until = _moment(args.since, "--since"), _moment(args.until, "--until")
    email = _normalized(args.email) if args.email else None
    only = Filter(tenant=args.tenant, email=email, types=frozenset(args.type or ()), until=until)
    try:
        count = asyncio.run(run_replay(_bootstrap(), since=since, only=only, format=args.format))
    except BrokenPipeError:
        # The reader has what it wanted (`portal-auth replay | head`): not a Kafka failure.
        # Python's own flush of stdout at exit would fail again; send it nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (KafkaError, OSError) as exc:
        raise SystemExit(f"error: Kafka at {_bootstrap()} does not answer ({type(exc).__name__})") from None
    print(f"replay: {count} events", file=sys.stderr)
    return 0


def _moment(text: str | None, option: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"error: {option} {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise SystemExit(f"error: {option} needs a time zone, e.g. 2026-11-27T09:00:00+00:00")
    return moment


def _normalized(email: str) -> str:
    """Events carry the normalized address, as accounts are keyed: match what a person types."""
    from shared.accounts import InvalidEmail, normalize_email

    try:
        return normalize_email(email)
    except InvalidEmail:
        raise SystemExit(f"error: {email!r} is not a valid email address") from None


def _bootstrap() -> str:
    from shared.settings import ConnectionSettings

    return ConnectionSettings().kafka_bootstrap_servers


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="portal-auth", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="run the whole system on this machine (Ctrl-C stops it)")
    p.set_defaults(run=up)

    p = sub.add_parser("serve", help="run one service in this process")
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
    p.add_argument("--no-migrate", action="store_true", help="skip the service's migrations at start")
    p.set_defaults(run=serve)

    p = sub.add_parser("migrate", help="apply the services' database migrations")
    p.add_argument("services", nargs="*", help="identity, tenant, lockout, mailer (default: all)")
    p.set_defaults(run=migrate)

    p = sub.add_parser("unlock", help="lift every lock of one account now")
    p.add_argument("org")
    p.add_argument("email")
    p.set_defaults(run=unlock)

    p = sub.add_parser("diagnose", help="why this person cannot log in: one line per cause that applies")
    p.add_argument("org")
    p.add_argument("email")
    p.set_defaults(run=diagnose)

    p = sub.add_parser("replay", help="the event log as JSON lines, or rebuild a service's state from it")
    p.add_argument("--since", help="start at this time (ISO 8601 with zone); default: the beginning")
    p.add_argument("--until", help="stop before this time (ISO 8601 with zone); default: the end as it is now")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl",
                   help="JSON lines (default) or CSV with one column per envelope field, the actor and the email")
    p.add_argument("--tenant", help="only this organization's events")
    p.add_argument("--email", help="only this account's events (normalized address)")
    p.add_argument("--type", action="append", help="only events of this type (repeatable)")
    p.add_argument("--rebuild", choices=["lockout", "identity", "mailer"],
                   help="rebuild this service's state (identity, mailer: their copies of organizations and locks) from the "
                   "log and compare it row by row with the live one (exit 1 when they differ)")
    p.add_argument("--replace", action="store_true", help="with --rebuild: make the rebuilt state the live one")
    p.set_defaults(run=replay)

    p = sub.add_parser("asyncapi", help="write the AsyncAPI document of every event")
    p.add_argument("--output", "-o", default="docs/asyncapi.json", help="file, or - for standard output")
    p.set_defaults(run=asyncapi)
    importlib.import_module("portal_auth.tenant_cli").add_parser(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
