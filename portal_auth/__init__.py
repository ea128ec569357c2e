"""The `portal-auth` command and the local infrastructure it runs the system on."""

import json
import os
from pathlib import Path

# Start order: tenant first, so the others find its events; ports on one machine, as the contract says.
SERVICES = ("tenant", "identity", "lockout", "mailer")
DEFAULT_PORTS = {"identity": 8001, "tenant": 8002, "lockout": 8003, "mailer": 8004}


def home() -> Path:
    """Where `portal-auth up` keeps its data, logs and admin token."""
    return Path(os.environ.get("PORTAL_AUTH_HOME", Path.home() / ".portal-auth"))


def admin_token_file() -> Path:
    return home() / "admin-token"


def service_urls_file() -> Path:
    """Where `portal-auth up` says which ports its services took, for the operator commands."""
    return home() / "services.json"


def write_service_urls(urls: dict[str, str]) -> None:
    service_urls_file().write_text(json.dumps(urls, indent=2))


def read_service_urls() -> dict[str, str]:
    try:
        return dict(json.loads(service_urls_file().read_text()))
    except (FileNotFoundError, ValueError):
        return {}
