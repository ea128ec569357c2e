"""Settings refuse what would fail later or leak: default secrets outside local use, bad proxies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from portal_auth.devstack import DevstackError
from portal_auth.system import System
from services.identity.settings import IdentitySettings
from services.lockout.settings import LockoutServiceSettings
from services.mailer.settings import MailerSettings
from services.tenant.settings import TenantServiceSettings
from shared.secrets import new_mail_token_key
from shared.settings import ServiceSettings

REAL_ADMIN_TOKEN = "x" * 32
PRODUCTION = {"admin_token": REAL_ADMIN_TOKEN, "mail_token_key": new_mail_token_key()}


def test_a_service_outside_local_use_refuses_the_well_known_admin_token() -> None:
    with pytest.raises(ValidationError, match="ADMIN_TOKEN must be set"):
        ServiceSettings()


@pytest.mark.parametrize("settings", [IdentitySettings, MailerSettings])
def test_identity_and_mailer_outside_local_use_refuse_the_well_known_mail_token_key(settings: type) -> None:
    with pytest.raises(ValidationError, match="MAIL_TOKEN_KEY must be set"):
        settings(admin_token=REAL_ADMIN_TOKEN)


@pytest.mark.parametrize("settings", [TenantServiceSettings, LockoutServiceSettings])
def test_tenant_and_lockout_need_no_mail_token_key(settings: type) -> None:
    assert not hasattr(settings(admin_token=REAL_ADMIN_TOKEN), "mail_token_key")


@pytest.mark.parametrize("token", ["a real secret", "y" * 31])
def test_an_admin_token_under_32_characters_is_refused_outside_local_use(token: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        ServiceSettings(admin_token=token)


@pytest.mark.parametrize("environment", ["local", "production"])
def test_an_empty_admin_token_is_refused_everywhere(environment: str) -> None:
    with pytest.raises(ValidationError, match="ADMIN_TOKEN must not be empty"):
        ServiceSettings(admin_token="", environment=environment)


@pytest.mark.parametrize(("changes", "problem"), [
    ({"cookie_secure": False}, "COOKIE_SECURE=false"),
    ({"bcrypt_rounds": 9}, "BCRYPT_ROUNDS must be at least 10"),
    ({"bcrypt_rounds": 4}, "BCRYPT_ROUNDS must be at least 10"),
])
def test_identity_outside_local_use_refuses_settings_fit_only_for_a_developers_machine(changes: dict, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        IdentitySettings(**PRODUCTION, **changes)
    assert IdentitySettings(**PRODUCTION, **changes, environment="local")


def test_mailer_outside_local_use_refuses_links_over_plain_http() -> None:
    with pytest.raises(ValidationError, match="PORTAL_URL_TEMPLATE must start with https://"):
        MailerSettings(**PRODUCTION, portal_url_template="http://{host}:8080")
    assert MailerSettings(**PRODUCTION, portal_url_template="https://{host}")


def test_production_settings_that_meet_every_rule_start() -> None:
    assert IdentitySettings(**PRODUCTION).bcrypt_rounds == 12


def test_local_use_may_run_on_the_defaults() -> None:
    assert ServiceSettings(environment="local").environment == "local"


def test_a_trusted_proxy_that_is_no_address_stops_identity_at_start() -> None:
    with pytest.raises(ValidationError, match="'gateway' is not an address or network"):
        IdentitySettings(environment="local", trusted_proxies="127.0.0.1, gateway")


def test_trusted_proxies_are_addresses_and_networks() -> None:
    settings = IdentitySettings(environment="local", trusted_proxies="127.0.0.1, 10.0.0.0/8")
    assert [settings.is_trusted_proxy(a) for a in ("127.0.0.1", "10.9.8.7", "192.0.2.1", None)] == [True, True, False, False]


@pytest.mark.e2e
def test_a_service_outside_local_use_does_not_start_with_a_short_admin_token(system: System) -> None:
    with pytest.raises(DevstackError, match="ADMIN_TOKEN must be at least 32 characters"):
        system.start("tenant", name="tenant-short-token", env={"ENVIRONMENT": "production", "ADMIN_TOKEN": "short"})
