"""Settings refuse what would fail later or leak: default secrets outside local use, bad proxies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.identity.settings import IdentitySettings
from services.lockout.settings import LockoutServiceSettings
from services.mailer.settings import MailerSettings
from services.tenant.bootstrap import TenantSettings
from shared.secrets import new_mail_token_key
from shared.settings import ServiceSettings


def test_a_service_outside_local_use_refuses_the_well_known_admin_token() -> None:
    with pytest.raises(ValidationError, match="ADMIN_TOKEN must be set"):
        ServiceSettings(mail_token_key=new_mail_token_key())


@pytest.mark.parametrize("settings", [IdentitySettings, MailerSettings])
def test_identity_and_mailer_outside_local_use_refuse_the_well_known_mail_token_key(settings: type[ServiceSettings]) -> None:
    with pytest.raises(ValidationError, match="MAIL_TOKEN_KEY must be set"):
        settings(admin_token="a real secret that is long enough to be one")


@pytest.mark.parametrize("settings", [LockoutServiceSettings, TenantSettings])
def test_services_that_never_see_a_token_run_without_the_mail_token_key(settings: type[ServiceSettings]) -> None:
    """The key goes only where tokens are sealed and opened (docker-compose.yml gives it to no other)."""
    assert settings(admin_token="a real secret that is long enough to be one").environment == "production"


def test_local_use_may_run_on_the_defaults() -> None:
    assert ServiceSettings(environment="local").environment == "local"


def test_a_trusted_proxy_that_is_no_address_stops_identity_at_start() -> None:
    with pytest.raises(ValidationError, match="'gateway' is not an address or network"):
        IdentitySettings(environment="local", trusted_proxies="127.0.0.1, gateway")


def test_trusted_proxies_are_addresses_and_networks() -> None:
    settings = IdentitySettings(environment="local", trusted_proxies="127.0.0.1, 10.0.0.0/8")
    assert [settings.is_trusted_proxy(a) for a in ("127.0.0.1", "10.9.8.7", "192.0.2.1", None)] == [True, True, False, False]
