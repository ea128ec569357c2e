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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="portal-auth", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run one service in this process")
    p.add_argument("service", choices=list(SERVICES))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
    p.add_argument("--no-migrate", action="store_true", help="skip the service's migrations at start")
    p.set_defaults(run=serve)

    p = sub.add_parser("migrate", help="apply the services' database migrations")
    p.add_argument("services", nargs="*", help="identity, tenant, lockout, mailer (default: all)")
    p.set_defaults(run=migrate)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
