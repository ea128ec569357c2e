"""The tenant service's admin API against the running system: token, validation, one domain one
organization (held by the database under concurrency), lookups."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from portal_auth.system import System
from tests.conftest import records_on

pytestmark = pytest.mark.e2e


def new_slug() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def new_tenant(**changes: Any) -> dict[str, Any]:
    slug = new_slug()
    return {"slug": slug, "name": "Globex", "domains": [f"{slug}.example.test"], **changes}


def fields_named(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return {error["field"] for error in answer.json()["errors"]}


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/admin/tenants", None),
    ("POST", "/admin/tenants", new_tenant()),
    ("POST", "/admin/tenants", "not json"),
    ("PATCH", "/admin/tenants/no-such-org", {"name": "x"}),
    ("PUT", "/admin/tenants/no-such-org/domains/x.example.test", None),
    ("GET", "/resolve?host=x.example.test", None),
], ids=["list", "create", "malformed", "update", "add-domain", "resolve"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic dGVzdA==", "Bearer"],
                         ids=["none", "wrong", "basic", "bare-bearer"])
async def test_admin_api_answers_401_without_the_token(system: System, method: str, path: str, body: Any,
                                                       authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    payload = {"content": body} if isinstance(body, str) else {"json": body}
    async with httpx.AsyncClient(base_url=system.url("tenant"), headers=headers) as stranger:
        answer = await stranger.request(method, path, **payload)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_created_organization_gets_the_default_settings(admin: httpx.AsyncClient) -> None:
    tenant = new_tenant()
    answer = await admin.post("/admin/tenants", json=tenant)
    assert answer.status_code == 201, answer.text
    assert answer.json()["settings"]["password"] == {"min_length": 12}
    assert answer.json()["settings"]["lockout"] == {"max_failures": 5, "max_failures_account": 20,
                                                    "window_seconds": 900, "lock_seconds": 900}
    assert answer.json()["settings"]["limits"] == {"requests_per_source_per_minute": 60, "failed_logins_per_source": 30}
    assert (await admin.get(f"/admin/tenants/{tenant['slug']}")).json() == answer.json()
    assert tenant["slug"] in [t["slug"] for t in (await admin.get("/admin/tenants")).json()["tenants"]]


async def test_taken_slug_is_409(admin: httpx.AsyncClient) -> None:
    first = new_tenant()
    assert (await admin.post("/admin/tenants", json=first)).status_code == 201
    again = await admin.post("/admin/tenants", json=new_tenant(slug=first["slug"]))
    assert again.status_code == 409
    assert again.json()["title"] == "That slug is taken"


async def test_domain_of_another_organization_is_409_on_create(admin: httpx.AsyncClient) -> None:
    first = new_tenant()
    assert (await admin.post("/admin/tenants", json=first)).status_code == 201
    other = new_tenant(domains=[first["domains"][0].upper()])  # the same host, however it is spelled
    answer = await admin.post("/admin/tenants", json=other)
    assert answer.status_code == 409
    assert answer.json()["title"] == "That domain is taken"
    assert (await admin.get(f"/admin/tenants/{other['slug']}")).status_code == 404  # nothing half-made


async def test_domain_of_another_organization_is_409_on_add(admin: httpx.AsyncClient) -> None:
    first, second = new_tenant(), new_tenant()
    for tenant in (first, second):
        assert (await admin.post("/admin/tenants", json=tenant)).status_code == 201
    answer = await admin.put(f"/admin/tenants/{second['slug']}/domains/{first['domains'][0]}")
    assert answer.status_code == 409
    assert answer.json()["title"] == "That domain is taken"
    assert (await admin.get(f"/admin/tenants/{second['slug']}")).json()["domains"] == second["domains"]


async def test_concurrent_creates_with_the_same_domain_give_exactly_one_201(admin: httpx.AsyncClient) -> None:
    host = f"{new_slug()}.example.test"
    answers = await asyncio.gather(*(admin.post("/admin/tenants", json=new_tenant(domains=[host])) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [201, 409]


async def test_concurrent_creates_with_the_same_slug_give_exactly_one_201(admin: httpx.AsyncClient) -> None:
    slug = new_slug()
    answers = await asyncio.gather(*(admin.post("/admin/tenants", json=new_tenant(slug=slug)) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [201, 409]


@pytest.mark.parametrize("slug", ["a", "x" * 64, "Acme", "-acme", "acme:1"])  # more cases: test_domain.py
async def test_bad_slug_is_422_naming_slug(admin: httpx.AsyncClient, slug: str) -> None:
    assert fields_named(await admin.post("/admin/tenants", json=new_tenant(slug=slug))) == {"slug"}


@pytest.mark.parametrize("name", ["", "Evil\r\nBcc: victim@example.com", "Nul\x00Corp"])
async def test_bad_name_is_422_naming_name(admin: httpx.AsyncClient, name: str) -> None:
    assert fields_named(await admin.post("/admin/tenants", json=new_tenant(name=name))) == {"name"}


@pytest.mark.parametrize("host", ["exa mple.test", "x.example.test:8080", "127.0.0.1", ""])  # more cases: test_domain.py
async def test_bad_domain_is_422_naming_domains(admin: httpx.AsyncClient, host: str) -> None:
    assert fields_named(await admin.post("/admin/tenants", json=new_tenant(domains=[host]))) == {"domains"}


async def test_bad_domain_added_is_422_naming_host(admin: httpx.AsyncClient) -> None:
    tenant = new_tenant()
    assert (await admin.post("/admin/tenants", json=tenant)).status_code == 201
    assert fields_named(await admin.put(f"/admin/tenants/{tenant['slug']}/domains/ex_ample.test")) == {"host"}


@pytest.mark.parametrize(("settings", "field"), [
    ({"password": {"min_length": 11}}, "settings.password.min_length"),
    ({"password": {"min_length": 129}}, "settings.password.min_length"),
    ({"lockout": {"max_failures": 0}}, "settings.lockout.max_failures"),
    ({"lockout": {"max_failures": 101}}, "settings.lockout.max_failures"),
    ({"lockout": {"max_failures": "5"}}, "settings.lockout.max_failures"),
    ({"lockout": {"max_failures": 10, "max_failures_account": 9}}, "settings.lockout.max_failures_account"),
    ({"lockout": {"max_failures_account": 101}}, "settings.lockout.max_failures_account"),
    ({"lockout": {"window_seconds": -1}}, "settings.lockout.window_seconds"),
    ({"lockout": {"lock_seconds": 0}}, "settings.lockout.lock_seconds"),
    ({"lockout": {"lock_seconds": 86401}}, "settings.lockout.lock_seconds"),
    ({"tokens": {"reset_ttl_seconds": 0}}, "settings.tokens.reset_ttl_seconds"),
    ({"tokens": {"confirmation_ttl_seconds": 10**9}}, "settings.tokens.confirmation_ttl_seconds"),
    ({"limits": {"requests_per_source_per_minute": 0}}, "settings.limits.requests_per_source_per_minute"),
    ({"limits": {"requests_per_source_per_minute": 100_001}}, "settings.limits.requests_per_source_per_minute"),
    ({"limits": {"failed_logins_per_source": 0}}, "settings.limits.failed_logins_per_source"),
    ({"support_email": "not an address"}, "settings.support_email"),
    ({"display_name": ""}, "settings.display_name"),
], ids=lambda value: value if isinstance(value, str) else None)
async def test_out_of_bounds_setting_is_422_naming_it(admin: httpx.AsyncClient, settings: dict[str, Any], field: str) -> None:
    assert fields_named(await admin.post("/admin/tenants", json=new_tenant(settings=settings))) == {field}


@pytest.mark.parametrize(("settings", "field"), [
    ({"colour": "red"}, "settings.colour"),
    ({"password": {"max_length": 64}}, "settings.password.max_length"),
], ids=["top-level", "nested"])
async def test_unknown_setting_is_422_naming_it(admin: httpx.AsyncClient, settings: dict[str, Any], field: str) -> None:
    answer = await admin.post("/admin/tenants", json=new_tenant(settings=settings))
    assert fields_named(answer) == {field}
    assert answer.json()["errors"][0]["message"] == "unknown setting"


async def test_unknown_field_is_422_naming_it(admin: httpx.AsyncClient) -> None:
    assert fields_named(await admin.post("/admin/tenants", json=new_tenant(nmae="Typo Inc"))) == {"nmae"}


async def test_every_bad_field_is_named_in_one_answer(admin: httpx.AsyncClient) -> None:
    answer = await admin.post("/admin/tenants", json=new_tenant(slug="A", domains=["a b"], settings={"colour": 1}))
    assert fields_named(answer) == {"slug", "domains", "settings.colour"}


async def test_bad_setting_in_an_update_is_422_and_changes_nothing(admin: httpx.AsyncClient) -> None:
    tenant = new_tenant()
    created = (await admin.post("/admin/tenants", json=tenant)).json()
    answer = await admin.patch(f"/admin/tenants/{tenant['slug']}", json={"name": "Renamed", "settings": {"password": {"min_length": 8}}})
    assert fields_named(answer) == {"settings.password.min_length"}
    assert (await admin.get(f"/admin/tenants/{tenant['slug']}")).json() == created


async def test_update_changes_only_the_given_settings(admin: httpx.AsyncClient) -> None:
    tenant = new_tenant(settings={"lockout": {"max_failures": 3}, "display_name": "Globex Portal"})
    assert (await admin.post("/admin/tenants", json=tenant)).status_code == 201
    answer = await admin.patch(f"/admin/tenants/{tenant['slug']}", json={"settings": {"lockout": {"lock_seconds": 60}}})
    assert answer.status_code == 200, answer.text
    settings = answer.json()["settings"]
    assert (settings["lockout"]["max_failures"], settings["lockout"]["lock_seconds"]) == (3, 60)
    assert (settings["display_name"], answer.json()["name"]) == ("Globex Portal", "Globex")


async def test_international_domain_is_stored_in_ascii_form(admin: httpx.AsyncClient) -> None:
    label = new_slug()
    answer = await admin.post("/admin/tenants", json=new_tenant(domains=[f"Bücher.{label}.Example.test."]))
    assert answer.status_code == 201, answer.text
    assert answer.json()["domains"] == [f"xn--bcher-kva.{label}.example.test"]
    resolved = await admin.get("/resolve", params={"host": f"bücher.{label}.example.test"})
    assert resolved.json()["slug"] == answer.json()["slug"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/admin/tenants/no-such-org"),
    ("PATCH", "/admin/tenants/no-such-org"),
    ("PUT", "/admin/tenants/no-such-org/domains/x.example.test"),
    ("DELETE", "/admin/tenants/no-such-org/domains/x.example.test"),
], ids=["show", "update", "add-domain", "remove-domain"])
async def test_unknown_slug_is_404(admin: httpx.AsyncClient, method: str, path: str) -> None:
    answer = await admin.request(method, path, json={"name": "x"} if method == "PATCH" else None)
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


async def test_removing_a_domain_the_organization_does_not_have_is_404(admin: httpx.AsyncClient) -> None:
    tenant = new_tenant()
    assert (await admin.post("/admin/tenants", json=tenant)).status_code == 201
    assert (await admin.delete(f"/admin/tenants/{tenant['slug']}/domains/elsewhere.example.test")).status_code == 404


async def test_adding_a_domain_it_already_has_changes_nothing(admin: httpx.AsyncClient) -> None:
    tenant = new_tenant()
    created = (await admin.post("/admin/tenants", json=tenant)).json()
    answer = await admin.put(f"/admin/tenants/{tenant['slug']}/domains/{tenant['domains'][0]}")
    assert (answer.status_code, answer.json()) == (200, created)


@pytest.mark.parametrize("suffix", ["", ":8080", ".", ":443"])
async def test_resolve_answers_the_organization_for_its_host(admin: httpx.AsyncClient, suffix: str) -> None:
    tenant = new_tenant()
    assert (await admin.post("/admin/tenants", json=tenant)).status_code == 201
    answer = await admin.get("/resolve", params={"host": tenant["domains"][0].upper() + suffix})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["slug"], answer.json()["domains"]) == (tenant["slug"], tenant["domains"])


@pytest.mark.parametrize("host", ["nobody.example.test", "nobody.example.test:8080", "not a host", "[::1]:8080"])
async def test_resolve_unknown_host_is_organization_not_found(admin: httpx.AsyncClient, host: str) -> None:
    answer = await admin.get("/resolve", params={"host": host})
    assert answer.status_code == 404
    assert (answer.json()["code"], answer.json()["title"]) == ("organization_not_found", "Organization not found")


async def test_every_admin_change_names_its_actor_in_its_event(system: System, admin: httpx.AsyncClient) -> None:
    """Who did what, for the audit: the caller's address and request id on every tenant event."""
    tenant = new_tenant()
    created = await admin.post("/admin/tenants", json=tenant, headers={"X-Request-ID": "ticket-4711-create"})
    assert created.headers["x-request-id"] == "ticket-4711-create"
    updated = await admin.patch(f"/admin/tenants/{tenant['slug']}", json={"name": "Renamed Inc"})
    generated = updated.headers["x-request-id"]  # none sent: one is made, and answered
    added = await admin.put(f"/admin/tenants/{tenant['slug']}/domains/more-{tenant['slug']}.localhost",
                            headers={"X-Request-ID": "ticket-4711-domain"})
    assert added.status_code == 200

    for _ in range(100):  # the outbox relay sends them just after each commit
        records = await records_on(system.infra.kafka_bootstrap, ["tenant.events"])
        mine = [json.loads(r.value) for r in records if r.key == tenant["slug"].encode()]
        if len(mine) >= 3:
            break
        await asyncio.sleep(0.2)
    assert [(e["type"], e["version"], e["data"]["actor"], e["correlation_id"]) for e in mine] == [
        ("TenantCreated", 2, {"address": "127.0.0.1", "request_id": "ticket-4711-create", "name": None}, "ticket-4711-create"),
        ("TenantUpdated", 2, {"address": "127.0.0.1", "request_id": generated, "name": None}, generated),
        ("DomainAdded", 2, {"address": "127.0.0.1", "request_id": "ticket-4711-domain", "name": None}, "ticket-4711-domain"),
    ]
