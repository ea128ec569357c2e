"""Tenant's rules on their own, with no service running: the fast layer under the API tests."""

from __future__ import annotations

from typing import Any

import pytest

from portal_auth.tenant_cli import Refused, setting, settings_tree
from services.tenant.domain import InvalidInput, check_all, check_settings, check_slug, merge_settings, normalize_host, without_port


@pytest.mark.parametrize(("given", "stored"), [
    ("Portal.Example.COM", "portal.example.com"),
    ("portal.example.com.", "portal.example.com"),
    (" portal.example.com ", "portal.example.com"),
    ("Bücher.example", "xn--bcher-kva.example"),
    ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008, as browsers send it, not IDNA 2003's "strasse.de"
    ("ＡＢＣ.example", "abc.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("localhost", "localhost"),
])
def test_host_is_stored_lower_case_in_ascii_form(given: str, stored: str) -> None:
    assert normalize_host(given) == stored


@pytest.mark.parametrize("host", ["", ".", "a..b", "-a.example", "a-.example", "a_b.example", "a b.example",
                                  "a.example:80", "10.0.0.1", "*.example", "xn--zz.example", "☃.example",
                                  "a" * 64 + ".example", ("a" * 60 + ".") * 5 + "example"])
def test_bad_host_names_the_field(host: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        normalize_host(host, field="host")
    assert [e.field for e in refused.value.errors] == ["host"]


@pytest.mark.parametrize(("authority", "host"), [
    ("portal.example:8080", "portal.example"), ("portal.example", "portal.example"), ("portal.example:", "portal.example:"),
])
def test_port_is_dropped_from_a_host_header(authority: str, host: str) -> None:
    assert without_port(authority) == host


@pytest.mark.parametrize("slug", ["ab", "acme", "acme-2", "a" * 63, "0-9"])
def test_good_slug_is_kept(slug: str) -> None:
    assert check_slug(slug) == slug


@pytest.mark.parametrize("slug", ["", "a", "a" * 64, "Acme", "-acme", "acme-", "ac_me", "ac me", "acme:1", "acme\n"])
def test_bad_slug_names_the_field(slug: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_slug(slug)
    assert [e.field for e in refused.value.errors] == ["slug"]


def test_settings_are_completed_with_the_defaults() -> None:
    settings = check_settings({"password": {"min_length": 16}})
    assert settings["password"] == {"min_length": 16}
    assert settings["lockout"]["max_failures"] == 5


def test_every_bad_setting_is_named() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_settings({"password": {"min_length": 8}, "lockout": {"max_failures": True}, "colour": "red"})
    assert {(e.field, e.message) for e in refused.value.errors} == {
        ("settings.password.min_length", "Input should be greater than or equal to 12"),
        ("settings.lockout.max_failures", "Input should be a valid integer"),
        ("settings.colour", "unknown setting"),
    }


def test_all_source_bound_below_the_per_source_one_is_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_settings({"lockout": {"max_failures": 30}})  # the default all-sources bound is 20
    assert [e.field for e in refused.value.errors] == ["settings.lockout.max_failures_account"]


def test_merge_changes_only_the_given_keys() -> None:
    base: dict[str, Any] = {"lockout": {"max_failures": 5, "lock_seconds": 900}, "display_name": "Acme"}
    merged = merge_settings(base, {"lockout": {"lock_seconds": 60}, "display_name": None})
    assert merged == {"lockout": {"max_failures": 5, "lock_seconds": 60}, "display_name": None}
    assert base["lockout"]["lock_seconds"] == 900


def test_check_all_reports_every_failure() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_all(lambda: check_slug("A"), lambda: normalize_host("a b"), lambda: 1)
    assert [e.field for e in refused.value.errors] == ["slug", "domains"]


@pytest.mark.parametrize(("text", "parsed"), [
    ("password.min_length=16", (["password", "min_length"], 16)),
    ("display_name=Acme Portal", (["display_name"], "Acme Portal")),
    ("support_email=help@acme.example", (["support_email"], "help@acme.example")),
    ("display_name=null", (["display_name"], None)),
])
def test_cli_setting_reads_json_values_and_plain_text(text: str, parsed: tuple[list[str], Any]) -> None:
    assert setting(text) == parsed


def test_cli_settings_nest_by_dotted_key() -> None:
    tree = settings_tree([setting("lockout.max_failures=3"), setting("lockout.lock_seconds=60"), setting("display_name=X")])
    assert tree == {"lockout": {"max_failures": 3, "lock_seconds": 60}, "display_name": "X"}


def test_cli_conflicting_settings_are_refused() -> None:
    with pytest.raises(Refused):
        settings_tree([setting("lockout=3"), setting("lockout.max_failures=3")])
