"""The portal pages: plain HTML forms for people, over the same use cases and the same
:class:`~services.identity.http.Portal` as the JSON API. No JavaScript is needed.

Form posts are protected against cross-site request forgery twice: a double-submit token (a
random value in a host-only, SameSite=Strict cookie that must come back in a hidden field; a
page on another site can neither read the cookie nor set it on this host) and, where the browser
says it, the form's origin (Sec-Fetch-Site, Origin) must be this host.

(No `from __future__ import annotations` here: FastAPI reads the local dependency annotations at runtime.)
"""


import functools
import hmac
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from services.identity import handlers
from services.identity.domain import Refused
from services.identity.handlers import Org
from services.identity.http import MAX_FIELD, MAX_PASSWORD_FIELD, Portal, bare_host, refusal, request_host
from services.identity.settings import IdentitySettings
from shared.db import DatabaseUnavailable
from shared.http import PROBLEMS
from shared.secrets import new_token
from shared.text import PlainText

TEMPLATES = Path(__file__).resolve().parent / "templates"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = ("GET", "HEAD")

# Shown on /login after a redirect; only these, so a link cannot put words on the page.
NOTICES = {
    "confirmed": "Your email address is confirmed. You can sign in now.",
    "password_changed": "Your password has been changed. Sign in with the new one.",
    "signed_out": "You are signed out.",
    "unlocked": "Your account is unlocked. You can sign in now.",
    "signed_out_everywhere": "You are signed out on every device.",
}
LOCAL_PATH = re.compile(r"/(?:[a-z-]+/?)*")
# What an expired or used link of each purpose can be renewed as (the page's one-click button).
LINK_PURPOSES = (handlers.CONFIRM, handlers.RESET, handlers.UNLOCK)


class LoginForm(BaseModel):
    email: str = Field("", max_length=MAX_FIELD)
    password: str = Field("", max_length=MAX_PASSWORD_FIELD)
    remember_me: bool = False


class RegisterForm(BaseModel):
    email: str = Field("", max_length=MAX_FIELD)
    password: str = Field("", max_length=MAX_PASSWORD_FIELD)
    display_name: PlainText = Field("", max_length=200)


class EmailForm(BaseModel):
    email: str = Field("", max_length=MAX_FIELD)


class TokenForm(BaseModel):
    token: str = Field("", max_length=MAX_FIELD)


class TokenPasswordForm(TokenForm):
    """A link's token and a password: the new one (reset) or the account's own (confirm)."""

    password: str = Field("", max_length=MAX_PASSWORD_FIELD)


class RenewForm(TokenForm):
    purpose: str = Field("", max_length=20)


class FormRejected(Exception):
    """A form post without the right CSRF token or from another origin."""


class CookiesBlocked(FormRejected):
    """A form post with no cookie at all, though its page set one: the browser refuses them."""


def _when(iso: str) -> str:
    """locked_until as people read it; UTC, since the server does not know the reader's zone."""
    return datetime.fromisoformat(iso).strftime("%H:%M UTC on %d %B %Y")


templates = Jinja2Templates(directory=TEMPLATES)
templates.env.filters["when"] = _when


@dataclass(frozen=True)
class View:
    """Renders pages with the organization's name and a CSRF token, and checks that token."""

    settings: IdentitySettings

    def page(self, request: Request, template: str, org: Org | None, *, status: int = 200,
             refused: Refused | None = None, **context: Any) -> HTMLResponse:
        """A page; with ``refused`` it shows the contract's message, status and Retry-After."""
        problem = refusal(refused) if refused is not None else None
        token = request.cookies.get(self.settings.csrf_cookie_name) or new_token()
        org_name = (org.settings.display_name or org.name) if org else None
        response = templates.TemplateResponse(
            request, template, {"org_name": org_name, "csrf_token": token, "error": problem, **context},
            status_code=problem.status if problem else status, headers=problem.headers if problem else None)
        if token != request.cookies.get(self.settings.csrf_cookie_name):
            response.set_cookie(self.settings.csrf_cookie_name, token, path="/", httponly=True, samesite="strict",
                                secure=self.settings.cookie_secure)
        return response

    def error(self, request: Request, title: str, status: int, **context: Any) -> HTMLResponse:
        return self.page(request, "error.html", None, status=status, title=title, **context)

    def cookie_probe(self, request: Request) -> Response:
        """A form came back with no cookie: set one and look whether the very next request brings
        it, so a refused cookie is told apart from one the browser dropped since (a restart)."""
        response = RedirectResponse(f"/cookies-check?again={quote(request.url.path)}", status_code=303)
        response.set_cookie(self.settings.csrf_cookie_name, new_token(), path="/", httponly=True, samesite="strict",
                            secure=self.settings.cookie_secure)
        return response

    def cookies_blocked(self, request: Request) -> HTMLResponse:
        """Said instead of showing the sign-in form again as if nothing had happened (cause 6)."""
        return self.page(request, "cookies.html", None, status=400, host=request_host(request, self.settings))

    async def check_form(self, request: Request) -> None:
        """A router dependency: every form post must carry the token and come from this host."""
        if request.method in SAFE_METHODS:
            return
        sent = (await request.form()).get(CSRF_FIELD)
        cookie = request.cookies.get(self.settings.csrf_cookie_name)
        if not request.cookies and isinstance(sent, str) and sent and self._from_this_host(request):
            raise CookiesBlocked()
        token_matches = isinstance(sent, str) and bool(cookie) and hmac.compare_digest(sent.encode(), str(cookie).encode())
        if not (token_matches and self._from_this_host(request)):
            raise FormRejected()

    def _from_this_host(self, request: Request) -> bool:
        """What the browser says of the form's origin, where it says anything. With
        Referrer-Policy no-referrer browsers send ``Origin: null`` on form posts, so
        Sec-Fetch-Site (same-site would be another organization's portal) is the first witness."""
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin", "null")
        return origin == "null" or bare_host(urlsplit(origin).netloc) == request_host(request, self.settings)


def page_route(view: View) -> type[APIRoute]:
    """Routes whose failures outside a form (unknown host, database down, a rejected or
    malformed form) are pages too, not JSON."""

    class PageRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handle = super().get_route_handler()

            async def route(request: Request) -> Response:
                try:
                    return await handle(request)
                except Refused as refused:  # organization_not_found, from resolving the host
                    return view.page(request, "error.html", None, refused=refused)
                except DatabaseUnavailable:
                    return view.page(request, "error.html", None, refused=Refused("service_unavailable", retry_after=5))
                except CookiesBlocked:
                    return view.cookie_probe(request)
                except FormRejected:
                    return view.error(request, "This form has expired", 403, again=request.url.path)
                except RequestValidationError:
                    return view.error(request, PROBLEMS["validation_error"][1], 422, again=request.url.path)

            return route

    return PageRoute


def router(portal: Portal) -> APIRouter:
    view = View(portal.settings)
    pages = APIRouter(route_class=page_route(view), dependencies=[Depends(view.check_form)], include_in_schema=False)
    Organization = Annotated[Org, Depends(portal.organization)]
    limited = [portal.per_source_limit]
    stylesheet = (TEMPLATES / "portal.css").read_text()

    def refusals_shown_on(template: str) -> Callable[..., Any]:
        """A refused form is shown again with the contract's message and what was typed, except
        the password (the endpoint's ``request``, ``org`` and ``form`` arguments)."""
        def decorate(endpoint: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
            @functools.wraps(endpoint)
            async def shown(**kwargs: Any) -> Response:
                try:
                    return await endpoint(**kwargs)
                except Refused as refused:
                    return view.page(kwargs["request"], template, kwargs.get("org"), refused=refused, form=kwargs["form"])
            return shown
        return decorate

    def sent(request: Request, org: Org | None, form: EmailForm | RegisterForm | None, what: str) -> HTMLResponse:
        return view.page(request, "sent.html", org, form=form, what=what)

    def redirect(path: str) -> RedirectResponse:
        return RedirectResponse(path, status_code=303)

    @pages.get("/assets/portal.css")
    async def css() -> Response:
        return Response(stylesheet, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    @pages.get("/cookies-check")
    async def cookies_check(request: Request, again: str = "/login") -> Response:
        if not request.cookies.get(portal.settings.csrf_cookie_name):
            return view.cookies_blocked(request)
        local = again if LOCAL_PATH.fullmatch(again) else "/login"  # never another site's address
        return view.error(request, "This form has expired", 403, again=local)

    @pages.get("/")
    async def account(request: Request, org: Organization, signed_in: bool = False) -> Response:
        try:
            session = await portal.run(handlers.current_session, org, cookie_value=portal.session_cookie(request))
        except Refused:
            if signed_in and portal.session_cookie(request) is None:  # set one redirect ago, not sent back
                return view.cookies_blocked(request)
            return redirect("/login")
        return view.page(request, "account.html", org, user=session["user"])

    @pages.get("/login")
    async def login_page(request: Request, org: Organization, notice: str = "") -> HTMLResponse:
        return view.page(request, "login.html", org, form=LoginForm(), notice=NOTICES.get(notice))

    @pages.post("/login", dependencies=limited)
    @refusals_shown_on("login.html")
    async def login(request: Request, org: Organization, form: Annotated[LoginForm, Form()]) -> Response:
        signed_in = await portal.login(org, request, email=form.email, password=form.password, remember=form.remember_me)
        response = redirect("/?signed_in=1")  # lets / tell a refused cookie from a session that ended
        portal.sign_in(response, signed_in)
        return response

    @pages.post("/logout")
    async def logout(request: Request, org: Organization) -> Response:
        await portal.run(handlers.logout, org, cookie_value=portal.session_cookie(request))
        response = redirect("/login?notice=signed_out")
        portal.sign_out(response)
        return response

    @pages.post("/logout-all")
    async def logout_all(request: Request, org: Organization) -> Response:
        try:
            await portal.run(handlers.logout_all, org, cookie_value=portal.session_cookie(request))
        except Refused:  # already signed out: nothing left to end
            pass
        response = redirect("/login?notice=signed_out_everywhere")
        portal.sign_out(response)
        return response

    @pages.get("/register")
    async def register_page(request: Request, org: Organization) -> HTMLResponse:
        return view.page(request, "register.html", org, form=RegisterForm())

    @pages.post("/register", dependencies=limited)
    @refusals_shown_on("register.html")
    async def register(request: Request, org: Organization, form: Annotated[RegisterForm, Form()]) -> Response:
        await portal.run(handlers.register, org, email=form.email, password=form.password,
                         display_name=form.display_name.strip() or None)
        return sent(request, org, form, "confirmation")

    @pages.get("/resend-confirmation")
    async def resend_page(request: Request, org: Organization) -> HTMLResponse:
        return view.page(request, "resend.html", org, form=EmailForm())

    @pages.post("/resend-confirmation", dependencies=limited)
    @refusals_shown_on("resend.html")
    async def resend(request: Request, org: Organization, form: Annotated[EmailForm, Form()]) -> Response:
        await portal.run(handlers.resend_confirmation, org, email=form.email)
        return sent(request, org, form, "confirmation")

    @pages.get("/confirm")
    @refusals_shown_on("confirm.html")
    async def confirm_page(request: Request, org: Organization, form: Annotated[TokenForm, Query()]) -> Response:
        await portal.run(handlers.check_link, org, token=form.token, purpose=handlers.CONFIRM)
        return view.page(request, "confirm.html", org, form=form)

    @pages.post("/confirm", dependencies=limited)
    @refusals_shown_on("confirm.html")
    async def confirm(request: Request, org: Organization, form: Annotated[TokenPasswordForm, Form()]) -> Response:
        await portal.attempt(handlers.confirm, org, portal.source(request), token=form.token, password=form.password)
        return redirect("/login?notice=confirmed")

    @pages.get("/forgot-password")
    async def forgot_page(request: Request, org: Organization) -> HTMLResponse:
        return view.page(request, "forgot.html", org, form=EmailForm())

    @pages.post("/forgot-password", dependencies=limited)
    @refusals_shown_on("forgot.html")
    async def forgot(request: Request, org: Organization, form: Annotated[EmailForm, Form()]) -> Response:
        await portal.run(handlers.forgot_password, org, email=form.email)
        return sent(request, org, form, "reset")

    @pages.get("/reset-password")
    @refusals_shown_on("reset.html")
    async def reset_page(request: Request, org: Organization, form: Annotated[TokenForm, Query()]) -> Response:
        await portal.run(handlers.check_link, org, token=form.token, purpose=handlers.RESET)
        return view.page(request, "reset.html", org, form=form)

    @pages.post("/reset-password", dependencies=limited)
    @refusals_shown_on("reset.html")
    async def reset(request: Request, org: Organization, form: Annotated[TokenPasswordForm, Form()]) -> Response:
        await portal.run(handlers.reset_password, org, token=form.token, password=form.password)
        return redirect("/login?notice=password_changed")

    @pages.post("/unlock/request", dependencies=limited)
    @refusals_shown_on("login.html")
    async def unlock_request(request: Request, org: Organization, form: Annotated[EmailForm, Form()]) -> Response:
        await portal.run(handlers.request_unlock, org, email=form.email)
        return sent(request, org, form, "unlock")

    @pages.get("/unlock")
    @refusals_shown_on("unlock.html")
    async def unlock_page(request: Request, org: Organization, form: Annotated[TokenForm, Query()]) -> Response:
        await portal.run(handlers.check_link, org, token=form.token, purpose=handlers.UNLOCK)
        return view.page(request, "unlock.html", org, form=form)

    @pages.post("/unlock", dependencies=limited)
    @refusals_shown_on("unlock.html")
    async def unlock(request: Request, org: Organization, form: Annotated[TokenForm, Form()]) -> Response:
        await portal.run(handlers.unlock, org, token=form.token)
        return redirect("/login?notice=unlocked")

    @pages.post("/renew-link", dependencies=limited)
    async def renew_link(request: Request, org: Organization, form: Annotated[RenewForm, Form()]) -> Response:
        if form.purpose not in LINK_PURPOSES:
            return view.error(request, PROBLEMS["validation_error"][1], 422)
        await portal.run(handlers.renew_link, org, token=form.token, purpose=form.purpose)
        return sent(request, org, None, "renewed")

    # Find your portal: on any host, also one that maps to no organization (so no Organization).

    @pages.get("/find-portal")
    async def find_portal_page(request: Request) -> HTMLResponse:
        return view.page(request, "find_portal.html", None, form=EmailForm())

    @pages.post("/find-portal", dependencies=[portal.per_source_limit_any_host])
    @refusals_shown_on("find_portal.html")
    async def find_portal(request: Request, form: Annotated[EmailForm, Form()]) -> Response:
        await portal.run(handlers.find_portals, None, email=form.email)
        return sent(request, None, form, "portals")

    return pages
