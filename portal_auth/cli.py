"""`portal-auth`: the one command for people who run the system."""

from __future__ import annotations

import argparse
import importlib
import sys

SERVICES = {"identity": 8001, "tenant": 8002, "lockout": 8003, "mailer": 8004}


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
    uvicorn.run(app, host=args.host, port=args.port or SERVICES[args.service], log_level="warning",
                proxy_headers=False, access_log=False)
    return 0


def migrate(args: argparse.Namespace) -> int:
    from shared.migrations import upgrade
    from shared.settings import ServiceSettings

    url = ServiceSettings().database_url
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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="portal-auth", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="run the whole system on this machine (Ctrl-C stops it)")
    p.set_defaults(run=up)

    p = sub.add_parser("serve", help="run one service in this process")
    p.add_argument("service", choices=list(SERVICES))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
    p.add_argument("--no-migrate", action="store_true", help="skip the service's migrations at start")
    p.set_defaults(run=serve)

    p = sub.add_parser("migrate", help="apply the services' database migrations")
    p.add_argument("services", nargs="*", help="identity, tenant, lockout, mailer (default: all)")
    p.set_defaults(run=migrate)

    p = sub.add_parser("asyncapi", help="write the AsyncAPI document of every event")
    p.add_argument("--output", "-o", default="docs/asyncapi.json", help="file, or - for standard output")
    p.set_defaults(run=asyncapi)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
