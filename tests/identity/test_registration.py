"""Registration and confirmation (article cause 1), and the rules for emails and passwords."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from portal_auth.system import System
from tests.conftest import Org, create_org, mail_to, portal, text_of
from tests.identity.conftest import (
    PASSWORD, account_events, assert_problem, confirmed_account, expire_link, login, mailed_tokens, metric, new_email,
    register,
)

pytestmark = pytest.mark.e2e


async def test_register_answers_confirmation_sent(client: httpx.AsyncClient) -> None:
    answer = await register(client, new_email())
    assert answer.json() == {"status": "confirmation_sent"}


async def test_registering_an_existing_address_answers_the_same_and_mails_a_notice(
        system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    first = await register(client, email)
    again = await register(client, email, "a different long password")
    assert again.json() == first.json()
    confirmation, notice = await mail_to(system, email, count=2)
    assert "/confirm?token=" in text_of(confirmation)
    assert "token=" not in text_of(notice)  # a notice to the owner, no second account


async def test_register_hashes_once_whether_or_not_the_address_exists(system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    before = await metric(system, "identity_password_hashes_total")
    await register(client, email)
    await register(client, email)
    assert await metric(system, "identity_password_hashes_total") == before + 2


@pytest.mark.parametrize("password", ["elevenchars", "short", " " * 11])
async def test_password_under_12_characters_is_password_too_short(client: httpx.AsyncClient, password: str) -> None:
    answer = await client.post("/auth/register", json={"email": new_email(), "password": password})
    assert assert_problem(answer, "password_too_short")["min_length"] == 12


@pytest.mark.parametrize("password", ["qwerty123456", "QWERTY123456", "ｑｗｅｒｔｙ１２３４５６", "1qaz2wsx3edc", "leavemealone"])
async def test_common_password_is_password_too_common_and_nothing_is_stored(
        system: System, client: httpx.AsyncClient, password: str) -> None:
    """On the list of common passwords, after NFKC and ignoring case: refused before any work."""
    email, hashes = new_email(), await metric(system, "identity_password_hashes_total")
    assert_problem(await client.post("/auth/register", json={"email": email, "password": password}), "password_too_common")
    assert await metric(system, "identity_password_hashes_total") == hashes
    await register(client, email)  # the address was not taken: this is its first registration
    [first] = await mail_to(system, email)
    assert "/confirm?token=" in text_of(first)


async def test_minimum_length_counts_the_characters_as_typed_not_their_compatibility_expansion(client: httpx.AsyncClient) -> None:
    """"ﷺ" is one character that NFKC turns into 18: eleven typed characters are too short."""
    answer = await client.post("/auth/register", json={"email": new_email(), "password": "ﷺ" + "abcdefghij"})
    assert assert_problem(answer, "password_too_short")["min_length"] == 12
    await register(client, new_email(), "ﷺ" + "abcdefghijk")


async def test_organization_may_ask_for_longer_passwords(system: System) -> None:
    strict = await create_org(system, settings={"password": {"min_length": 16}})
    async with portal(system, strict) as client:
        answer = await client.post("/auth/register", json={"email": new_email(), "password": "fifteen chars!!"})
        assert assert_problem(answer, "password_too_short", "Password must be at least 16 characters")["min_length"] == 16
        await register(client, new_email(), "sixteen chars!!!")


@pytest.mark.parametrize("length", [1025, 10_000])
async def test_password_over_1024_characters_is_password_too_long(client: httpx.AsyncClient, length: int) -> None:
    answer = await client.post("/auth/register", json={"email": new_email(), "password": "p" * length})
    assert_problem(answer, "password_too_long")


async def test_1024_character_password_works(system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client, password="p" * 1023 + "q")
    assert (await login(client, account.email, account.password)).status_code == 200


async def test_hundred_character_password_fails_when_cut_to_72_bytes(system: System, client: httpx.AsyncClient) -> None:
    password = "x" * 72 + "y" * 28  # bcrypt alone would read only the x's
    account = await confirmed_account(system, client, password=password)
    assert_problem(await login(client, account.email, password[:72]), "invalid_credentials")
    assert_problem(await login(client, account.email, "x" * 72 + "z" * 28), "invalid_credentials")
    assert (await login(client, account.email, password)).status_code == 200


async def test_password_typed_in_full_width_characters_matches_after_nfkc(system: System, client: httpx.AsyncClient) -> None:
    account = await confirmed_account(system, client, password="ｐａｓｓｗｏｒｄ１２３４５")
    assert (await login(client, account.email, "password12345")).status_code == 200


@pytest.mark.parametrize("email", ["not-an-address", "two@@example.com", "", "a@b", "x" * 250 + "@example.com"])
async def test_malformed_email_is_invalid_email(client: httpx.AsyncClient, email: str) -> None:
    assert_problem(await client.post("/auth/register", json={"email": email, "password": PASSWORD}), "invalid_email")


async def test_email_is_trimmed_and_case_folded_into_one_account(system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, f"  {email.upper()} ")
    [token] = await mailed_tokens(system, email, "/confirm")
    await client.post("/auth/confirm", json={"token": token, "password": PASSWORD})
    answer = await login(client, email, PASSWORD)
    assert answer.json()["user"]["email"] == email


async def test_international_domain_is_one_account_in_either_spelling(system: System, client: httpx.AsyncClient) -> None:
    local = new_email().split("@")[0]
    await register(client, f"{local}@bücher.example")
    [token] = await mailed_tokens(system, f"{local}@xn--bcher-kva.example", "/confirm")
    await client.post("/auth/confirm", json={"token": token, "password": PASSWORD})
    assert (await login(client, f"{local}@xn--bcher-kva.example", PASSWORD)).status_code == 200
    assert (await login(client, f"{local}@BÜCHER.example", PASSWORD)).status_code == 200


async def test_right_password_on_unconfirmed_account_is_user_not_confirmed(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    body = assert_problem(await login(client, email, PASSWORD), "user_not_confirmed")
    assert body["actions"] == ["resend_confirmation"]


async def test_wrong_password_on_unconfirmed_account_is_invalid_credentials(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    assert_problem(await login(client, email, "not the password at all"), "invalid_credentials")


async def test_confirmation_link_activates_the_account_and_works_once(system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    [token] = await mailed_tokens(system, email, "/confirm")
    answer = await client.post("/auth/confirm", json={"token": token, "password": PASSWORD})
    assert (answer.status_code, answer.json()) == (200, {"status": "confirmed"})
    assert (await login(client, email, PASSWORD)).status_code == 200
    again = assert_problem(await client.post("/auth/confirm", json={"token": token, "password": PASSWORD}), "token_invalid")
    assert again["actions"] == ["request_new"]


async def test_confirming_with_a_wrong_password_is_a_failed_login_and_leaves_the_link_usable(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    email = new_email()
    await register(client, email)
    [token] = await mailed_tokens(system, email, "/confirm")
    wrong = await client.post("/auth/confirm", json={"token": token, "password": "not the password at all"})
    assert_problem(wrong, "invalid_credentials")
    assert_problem(await login(client, email, PASSWORD), "user_not_confirmed")
    [failed] = [e for e in await account_events(system, org, email, until="LoginFailed", count=1) if e["type"] == "LoginFailed"]
    assert failed["data"]["source"] == "127.0.0.1"
    assert (await client.post("/auth/confirm", json={"token": token, "password": PASSWORD})).json() == {"status": "confirmed"}
    assert (await login(client, email, PASSWORD)).status_code == 200


async def test_someone_who_registered_another_persons_address_cannot_have_them_confirm_it(
        system: System, client: httpx.AsyncClient) -> None:
    """The squatter registers the victim's address; the victim clicks the link but knows no such
    password, so the account stays unconfirmed. A reset through the same mailbox makes it the
    victim's: confirmed, with the victim's password, and the squatter's no longer opens it."""
    victim = new_email()
    await register(client, victim, "the squatters own passphrase")
    [token] = await mailed_tokens(system, victim, "/confirm")
    assert_problem(await client.post("/auth/confirm", json={"token": token, "password": ""}), "invalid_credentials")

    await client.post("/auth/password/forgot", json={"email": victim})
    [reset] = await mailed_tokens(system, victim, "/reset-password")
    assert (await client.post("/auth/password/reset", json={"token": reset, "password": PASSWORD})).status_code == 200
    assert_problem(await login(client, victim, "the squatters own passphrase"), "invalid_credentials")
    assert (await login(client, victim, PASSWORD)).status_code == 200


async def test_unknown_confirmation_token_is_token_invalid(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/auth/confirm", json={"token": "no-such-token", "password": PASSWORD}), "token_invalid")
    assert body["actions"] == ["request_new"]


async def test_expired_confirmation_link_is_token_expired(system: System, client: httpx.AsyncClient,
                                                           identity_db: AsyncEngine) -> None:
    email = new_email()
    await register(client, email)
    [token] = await mailed_tokens(system, email, "/confirm")
    await expire_link(identity_db, token)
    body = assert_problem(await client.post("/auth/confirm", json={"token": token, "password": PASSWORD}), "token_expired")
    assert body["actions"] == ["request_new"]


async def test_resend_answers_the_same_for_any_address(system: System, client: httpx.AsyncClient) -> None:
    unconfirmed, confirmed = new_email(), (await confirmed_account(system, client)).email
    await register(client, unconfirmed)
    answers = [await client.post("/auth/confirmation/resend", json={"email": e}) for e in (new_email(), unconfirmed, confirmed)]
    assert {(a.status_code, a.text) for a in answers} == {(202, '{"status":"confirmation_sent"}')}


async def test_resend_mails_a_fresh_link_and_the_old_one_keeps_working_until_one_is_used(
        system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    await mailed_tokens(system, email, "/confirm")
    await client.post("/auth/confirmation/resend", json={"email": email})
    old, fresh = await mailed_tokens(system, email, "/confirm", count=2)
    assert (await client.post("/auth/confirm", json={"token": old, "password": PASSWORD})).status_code == 200
    assert_problem(await client.post("/auth/confirm", json={"token": fresh, "password": PASSWORD}), "token_invalid")


async def test_at_most_three_confirmation_links_in_15_minutes_and_a_further_request_voids_none(
        system: System, client: httpx.AsyncClient, org: Org) -> None:
    email = new_email()
    await register(client, email)
    for _ in range(3):  # the registration's link and two more; the third resend is one too many
        answer = await client.post("/auth/confirmation/resend", json={"email": email})
        assert (answer.status_code, answer.json()) == (202, {"status": "confirmation_sent"})
    first, *_ = await mailed_tokens(system, email, "/confirm", count=3)

    await register(client, email)  # a later event and email for the same account: the notice
    events = await account_events(system, org, email, until="RegistrationRepeated", count=1)
    assert sum(e["type"] in ("UserRegistered", "ConfirmationRequested") for e in events) == 3
    await mail_to(system, email, count=4)
    assert len(await mailed_tokens(system, email, "/confirm")) == 3
    assert (await client.post("/auth/confirm", json={"token": first, "password": PASSWORD})).status_code == 200


async def test_confirmation_link_is_no_link_on_another_organizations_host(
        system: System, client: httpx.AsyncClient, other_org: Org) -> None:
    email = new_email()
    await register(client, email)
    [token] = await mailed_tokens(system, email, "/confirm")
    async with portal(system, other_org) as elsewhere:
        assert_problem(await elsewhere.post("/auth/confirm", json={"token": token, "password": PASSWORD}), "token_invalid")


async def test_name_with_a_control_character_is_refused_and_nothing_is_stored(system: System, client: httpx.AsyncClient) -> None:
    email = new_email()
    refused = await client.post("/auth/register", json={"email": email, "password": PASSWORD, "display_name": "Ann\x00Smith"})
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["display_name"]

    await register(client, email, display_name="Ann Smith")
    [first_email] = await mail_to(system, email)
    assert "/confirm?token=" in text_of(first_email)  # a confirmation, not a notice: no account was made before
