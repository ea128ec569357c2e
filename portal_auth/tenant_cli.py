"""`portal-auth tenant`: organizations, their portal domains and settings, through the tenant
service's admin API: TENANT_URL (default http://127.0.0.1:8002) with ADMIN_TOKEN, or the token
`portal-auth up` keeps in its file.

Exit status: 0 done, 1 the service refused or could not be reached (one "error: ..." line on
stderr, then the details), 2 the command line itself is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

Tenant = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One admin API request."""

    method: str
    path: str
    body: dict[str, Any] | None = None


class Refused(Exception):
    """What to tell the operator when the request did not do what was asked."""

    def __init__(self, headline: str, *details: str) -> None:
        super().__init__(headline)
        self.headline, self.details = headline, details


# --- the command line ----------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `tenant` and its subcommands to `portal-auth`'s subparsers."""
    tenant = subparsers.add_parser("tenant", help="create, list, show and change organizations and their domains",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = tenant.add_subparsers(dest="tenant_command", required=True, metavar="COMMAND")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print the service's JSON answer")

    def command(name: str, help_text: str, call: Callable[[argparse.Namespace], Call],
                render: Callable[[Any], str] = describe) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, parents=[output], help=help_text, description=help_text)
        parser.set_defaults(run=run, call=call, render=render)
        return parser

    p = command("create", "create an organization", create_call)
    p.add_argument("slug", help="2 to 63 characters of a-z, 0-9 and '-'")
    p.add_argument("--name", required=True, help="the organization's name, shown in pages and emails")
    _domain_options(p)
    _setting_options(p)

    command("list", "list every organization", lambda args: Call("GET", "/admin/tenants"), describe_all)

    p = command("show", "show one organization: its domains and settings", lambda args: Call("GET", _tenant_path(args.slug)))
    p.add_argument("slug")

    p = command("update", "rename an organization or change some of its settings", update_call)
    p.add_argument("slug")
    p.add_argument("--name", help="a new name")
    _setting_options(p)

    for name, method, verb in (("add-domain", "PUT", "add"), ("remove-domain", "DELETE", "remove")):
        p = command(name, f"{verb} a portal domain", domain_call(method))
        p.add_argument("slug")
        p.add_argument("host", help="a host name, e.g. portal.example.com (international names welcome)")


def _domain_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", dest="domains", action="append", default=[], metavar="HOST",
                        help="a portal domain of the organization; repeat for more")


def _setting_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="settings", action="append", default=[], type=setting, metavar="KEY=VALUE",
                        help="a setting, e.g. password.min_length=16 or display_name='Acme Portal'; repeat for more")


def setting(text: str) -> tuple[list[str], Any]:
    """'lockout.max_failures=3' -> (['lockout', 'max_failures'], 3). Values are read as JSON when
    they are JSON (numbers, true, null), as text otherwise, so emails and names need no quotes."""
    key, equals, raw = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip().split("."), value


def settings_tree(pairs: Iterable[tuple[list[str], Any]]) -> dict[str, Any]:
    """[(['password', 'min_length'], 16)] -> {'password': {'min_length': 16}}."""
    tree: dict[str, Any] = {}
    for path, value in pairs:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise Refused(f"setting {'.'.join(path)} conflicts with another --set")
        node[path[-1]] = value
    return tree


def create_call(args: argparse.Namespace) -> Call:
    body = {"slug": args.slug, "name": args.name, "domains": args.domains, "settings": settings_tree(args.settings)}
    return Call("POST", "/admin/tenants", body)


def update_call(args: argparse.Namespace) -> Call:
    body: dict[str, Any] = {"settings": settings_tree(args.settings)} if args.settings else {}
    if args.name is not None:
        body["name"] = args.name
    if not body:
        raise Refused("nothing to change", "give --name NAME or --set KEY=VALUE")
    return Call("PATCH", _tenant_path(args.slug), body)


def domain_call(method: str) -> Callable[[argparse.Namespace], Call]:
    def call(args: argparse.Namespace) -> Call:
        return Call(method, f"{_tenant_path(args.slug)}/domains/{quote(args.host, safe='')}")
    return call


def _tenant_path(slug: str) -> str:
    return f"/admin/tenants/{quote(slug, safe='')}"


# --- talking to the service ----------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    # TENANT_URL and the admin token, found as every operator command finds them; imported here
    # because it is slow to import and `--help` or a usage error should not wait for it.
    from portal_auth.operator import admin_client

    try:
        call = args.call(args)
        with admin_client("tenant") as client:
            answer = send(client, call)
    except Refused as refused:
        print(f"error: {refused.headline}", *(f"  {line}" for line in refused.details), sep="\n", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, ensure_ascii=False) if args.json else args.render(answer))
    return 0


def send(client: httpx.Client, call: Call) -> Any:
    """The service's JSON answer, or Refused saying why there is none."""
    try:
        response = client.request(call.method, call.path, json=call.body)
    except httpx.HTTPError as exc:
        raise Refused(f"cannot reach the tenant service at {client.base_url}: {exc or type(exc).__name__}",
                      "is it running? TENANT_URL says where it is") from None
    if response.is_error:
        raise refusal(response)
    return _json(response)


def refusal(response: httpx.Response) -> Refused:
    """A problem+json answer as the operator should read it: title and status, then each bad field."""
    problem = _json(response) if "json" in response.headers.get("content-type", "") else {}
    title = problem.get("title") or response.reason_phrase
    details = [f"{e['field']}: {e['message']}" for e in problem.get("errors", [])]
    if not details and problem.get("detail"):
        details = [problem["detail"]]
    if response.status_code == 401:
        details.append("set ADMIN_TOKEN to the admin token the services were started with")
    return Refused(f"{title} ({response.status_code})", *details)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise Refused(f"unexpected answer from {response.request.url} ({response.status_code})") from None


# --- readable output -----------------------------------------------------------------------------


def describe(tenant: Tenant) -> str:
    lines = [f"{tenant['slug']}  {tenant['name']}", *_labelled("domains", tenant["domains"] or ["(none)"]), "settings:"]
    lines += [f"  {key:<34}{_shown(value)}" for key, value in _flat(tenant["settings"])]
    return "\n".join(lines)


def describe_all(answer: dict[str, list[Tenant]]) -> str:
    tenants = answer["tenants"]
    if not tenants:
        return "no organizations yet: portal-auth tenant create SLUG --name NAME --domain HOST"
    rows = [("SLUG", "NAME", "DOMAINS")] + [(t["slug"], t["name"], ", ".join(t["domains"]) or "-") for t in tenants]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{slug:<{widths[0]}}  {name:<{widths[1]}}  {hosts}" for slug, name, hosts in rows)


def _labelled(label: str, values: list[str]) -> list[str]:
    return [f"{label + ':' if i == 0 else '':<10}{value}" for i, value in enumerate(values)]


def _flat(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested settings as the dotted keys `--set` takes."""
    pairs: list[tuple[str, Any]] = []
    for key, value in settings.items():
        pairs += _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return pairs


def _shown(value: Any) -> str:
    return "-" if value is None else str(value)
