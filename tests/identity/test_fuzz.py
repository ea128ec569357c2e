"""Hypothesis properties over the portal API: whatever the text (any Unicode password up to the
limit, malformed emails, hosts, tokens), the answer is a contract answer, never a server error.
Short by default (HYPOTHESIS_EXAMPLES raises it)."""

from __future__ import annotations

import os
import random

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal_auth.system import System
from tests.conftest import Org

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

passwords = st.one_of(st.text(max_size=80), st.text(min_size=1000, max_size=70_000).filter(lambda s: len(s) > 0),
                      st.text(alphabet=st.characters(categories=["Zs", "Cc", "Cf", "Mn", "So"]), max_size=40))
emails = st.one_of(st.emails().map(str), st.text(max_size=300),
                   st.builds(lambda local, domain: f"{local}@{domain}", st.text(min_size=1, max_size=70), st.text(min_size=1, max_size=70)))
tokens = st.one_of(st.text(max_size=300), st.from_regex(r"[A-Za-z0-9_\-]{0,200}", fullmatch=True))
# Any Host a valid HTTP request can carry (RFC 9110 field values: visible ASCII and obs-text;
# DEL is none, and the HTTP parser answers such a request 400 before the service sees it).
hosts = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
                min_size=0, max_size=300)


def _answers(answer: httpx.Response, allowed: set[int]) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:500])
    assert answer.status_code in allowed, (answer.status_code, answer.text[:500])
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
        assert isinstance(answer.json()["code"], str)


@pytest.fixture
def portal_client(system: System, org: Org) -> httpx.Client:
    with httpx.Client(base_url=system.url("identity"), headers={"Host": org.host}, timeout=30) as client:
        yield client


def _source() -> dict[str, str]:
    return {"X-Forwarded-For": f"192.0.2.{random.randrange(1, 255)}, 10.{random.randrange(256)}.{random.randrange(256)}.1"}


@FUZZ
@given(email=emails, password=passwords)
def test_login_with_any_text_is_a_contract_answer(portal_client: httpx.Client, email: str, password: str) -> None:
    answer = portal_client.post("/auth/login", json={"email": email, "password": password}, headers=_source())
    _answers(answer, {401, 413, 422, 423, 429})


@FUZZ
@given(email=emails, password=passwords, name=st.one_of(st.none(), st.text(max_size=300)))
def test_register_with_any_text_is_a_contract_answer(portal_client: httpx.Client, email: str, password: str, name: str | None) -> None:
    body = {"email": email, "password": password, **({"display_name": name} if name is not None else {})}
    answer = portal_client.post("/auth/register", json=body, headers=_source())
    _answers(answer, {202, 413, 422, 429})


@FUZZ
@given(token=tokens, password=passwords, path=st.sampled_from(["/auth/confirm", "/auth/password/reset"]))
def test_any_token_is_a_contract_answer(portal_client: httpx.Client, token: str, password: str, path: str) -> None:
    answer = portal_client.post(path, json={"token": token, "password": password}, headers=_source())
    _answers(answer, {400, 401, 410, 413, 422, 429})


@FUZZ
@given(host=hosts)
def test_any_host_is_a_contract_answer(system: System, host: str) -> None:
    with httpx.Client(base_url=system.url("identity"), timeout=30) as client:
        answer = client.get("/auth/session", headers={"Host": host.encode("latin-1")})  # the bytes as they come
    _answers(answer, {400, 401, 404, 422})
