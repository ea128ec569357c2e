"""The `portal-auth` command and the local infrastructure it runs the system on."""

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
