"""`portal-auth tenant ...` run as an operator runs it: a separate process talking to the tenant
service over HTTP, configured by TENANT_URL and ADMIN_TOKEN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from portal_auth.devstack import free_port
from portal_auth.system import System
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.e2e


def tenant_cli(url: str, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    # `python -m portal_auth.cli` is the `portal-auth` console script's entry point, without
    # depending on where the script was installed.
    return subprocess.run([sys.executable, "-m", "portal_auth.cli", "tenant", *args], capture_output=True, text=True,
                          env={**os.environ, "TENANT_URL": url, "ADMIN_TOKEN": token}, timeout=60)


def cli(system: System, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    return tenant_cli(system.url("tenant"), *args, token=token)


def existing(system: System) -> str:
    """An organization made through the API, for commands that need one."""
    slug = f"cli-{uuid.uuid4().hex[:10]}"
    answer = httpx.post(f"{system.url('tenant')}/admin/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                        json={"slug": slug, "name": "Initech", "domains": [f"{slug}.example.test"]})
    assert answer.status_code == 201, answer.text
    return slug


def setting_line(output: str, key: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.split()[:1] == [key])


def test_cli_creates_an_organization_and_shows_it(system: System) -> None:
    slug = f"cli-{uuid.uuid4().hex[:10]}"
    created = cli(system, "create", slug, "--name", "Initech Corp", "--domain", f"{slug}.example.test",
                  "--domain", f"Bücher.{slug}.example.test", "--set", "password.min_length=14",
                  "--set", "support_email=help@initech.example.com")
    assert created.returncode == 0, created.stderr
    shown = cli(system, "show", slug)
    assert shown.stdout == created.stdout
    assert shown.stdout.splitlines()[0] == f"{slug}  Initech Corp"
    assert f"xn--bcher-kva.{slug}.example.test" in shown.stdout
    assert setting_line(shown.stdout, "password.min_length") == ["password.min_length", "14"]
    assert setting_line(shown.stdout, "support_email") == ["support_email", "help@initech.example.com"]


def test_cli_lists_organizations_with_their_domains(system: System) -> None:
    slug = existing(system)
    listed = cli(system, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:3] == ["SLUG", "NAME", "DOMAINS"]
    assert [slug, "Initech", f"{slug}.example.test"] in [line.split() for line in listed.stdout.splitlines()]


def test_cli_updates_the_name_and_only_the_given_settings(system: System) -> None:
    slug = existing(system)
    updated = cli(system, "update", slug, "--name", "Initech Two", "--set", "lockout.max_failures=3",
                  "--set", "display_name=Initech Portal")
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.splitlines()[0] == f"{slug}  Initech Two"
    assert setting_line(updated.stdout, "lockout.max_failures") == ["lockout.max_failures", "3"]
    assert setting_line(updated.stdout, "lockout.lock_seconds") == ["lockout.lock_seconds", "900"]
    assert setting_line(updated.stdout, "display_name") == ["display_name", "Initech", "Portal"]


def test_cli_adds_and_removes_a_domain(system: System) -> None:
    slug = existing(system)
    host = f"portal.{slug}.example.test"
    added = cli(system, "add-domain", slug, host)
    assert added.returncode == 0, added.stderr
    assert host in added.stdout
    removed = cli(system, "remove-domain", slug, host)
    assert removed.returncode == 0, removed.stderr
    assert host not in removed.stdout


def test_cli_json_prints_the_service_answer(system: System) -> None:
    slug = existing(system)
    shown = cli(system, "show", slug, "--json")
    assert shown.returncode == 0, shown.stderr
    answer = httpx.get(f"{system.url('tenant')}/admin/tenants/{slug}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert json.loads(shown.stdout) == answer.json()


def test_cli_taken_slug_is_an_error_line_and_exit_1(system: System) -> None:
    slug = existing(system)
    again = cli(system, "create", slug, "--name", "Initech")
    assert again.returncode == 1
    assert again.stderr.splitlines()[0] == "error: That slug is taken (409)"
    assert again.stdout == ""


def test_cli_bad_setting_names_the_field(system: System) -> None:
    slug = existing(system)
    refused = cli(system, "update", slug, "--set", "password.min_length=8")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[0] == "error: Invalid request (422)"
    assert refused.stderr.splitlines()[1].strip().startswith("settings.password.min_length:")


def test_cli_unknown_organization_is_an_error(system: System) -> None:
    refused = cli(system, "show", "no-such-org")
    assert (refused.returncode, refused.stderr.splitlines()[0]) == (1, "error: Not found (404)")


def test_cli_wrong_token_is_an_error(system: System) -> None:
    refused = cli(system, "list", token="not-the-token")
    assert (refused.returncode, refused.stderr.splitlines()[0]) == (1, "error: Admin token missing or wrong (401)")


def test_cli_unreachable_service_is_an_error() -> None:
    refused = tenant_cli(f"http://127.0.0.1:{free_port()}", "list")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: cannot reach the tenant service at http://127.0.0.1:")


def test_cli_setting_without_a_value_is_a_usage_error() -> None:
    refused = tenant_cli("http://127.0.0.1:9", "update", "acme", "--set", "password.min_length")
    assert refused.returncode == 2
    assert "expected KEY=VALUE" in refused.stderr
