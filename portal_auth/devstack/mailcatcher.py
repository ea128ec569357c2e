"""A local SMTP server that keeps every message as a file, with a read-only web inbox.

Run as ``python -m portal_auth.devstack.mailcatcher --dir D --smtp-port P --web-port W``;
``start_mail_catcher`` does that and gives tests a handle on D.

Files in D:
  * ``<arrival time ns>-<seq>.eml``: one per message, the name sorts by arrival. The SMTP
    envelope is prepended as ``X-Envelope-From`` / ``X-Envelope-To`` headers, because the
    envelope recipients (BCC included) are what a test of mail delivery must check.
  * ``.fail-with``: when present, holds an SMTP code that every DATA command is answered
    with instead of storing the message, so tests can make delivery fail.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import itertools
import re
import signal
import time
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from ._mailfiles import FAIL_WITH_FILE, arrival_time, is_message_name, message_name, message_paths, read_message

__all__ = ["main"]

_HOST = "127.0.0.1"
_URL = re.compile(r"https?://[^\s<>\"']+")


# --- SMTP -----------------------------------------------------------------------------------


class StoringHandler:
    """aiosmtpd handler: writes each message to its own file, or fails on request."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sequence = itertools.count()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failure = self._requested_failure()
        if failure is not None:
            return failure
        self._store(envelope)
        return "250 2.0.0 Message accepted for delivery"

    def _requested_failure(self) -> str | None:
        # Read for every message, so a test's fail_with() takes effect on the very next one.
        try:
            code = int((self.directory / FAIL_WITH_FILE).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        enhanced = "4.3.0" if code < 500 else "5.3.0"
        return f"{code} {enhanced} Failure requested through the mail catcher's fail_with"

    def _store(self, envelope: Envelope) -> None:
        headers = (f"X-Envelope-From: {envelope.mail_from}\r\n"
                   f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n").encode()
        content = envelope.original_content or b""
        name = message_name(time.time_ns(), next(self._sequence))
        partial = self.directory / f".{name}.partial"
        partial.write_bytes(headers + content)
        partial.rename(self.directory / name)  # readers never see half a message


def _accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    # Services configured with SMTP credentials must work here too; the catcher checks none.
    return AuthResult(success=True)


async def _start_smtp(directory: Path, host: str, port: int) -> asyncio.Server:
    handler = StoringHandler(directory)

    def factory() -> SMTP:
        return SMTP(handler, hostname="mailcatcher.local", enable_SMTPUTF8=True,
                    authenticator=_accept_any_login, auth_require_tls=False)

    return await asyncio.get_running_loop().create_server(factory, host, port)


# --- Web inbox ------------------------------------------------------------------------------


def _page(title: str, body: str, *, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return (f"<!doctype html><html><head><meta charset=\"utf-8\">{meta}<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}"
            "pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}</style></head>"
            f"<body>{body}</body></html>")


def _inbox_page(directory: Path) -> str:
    rows = []
    for path in reversed(message_paths(directory)):  # newest first
        message = read_message(path)
        received = arrival_time(path).strftime("%Y-%m-%d %H:%M:%S")
        cells = (received, message.get("From", ""), message.get("To") or message.get("X-Envelope-To", ""))
        link = f'<a href="/messages/{path.name}">{html.escape(str(message.get("Subject", "(no subject)")))}</a>'
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + f"<td>{link}</td></tr>")
    table = ("<table><tr><th>Received</th><th>From</th><th>To</th><th>Subject</th></tr>" + "".join(rows) + "</table>"
             if rows else "<p>No messages yet.</p>")
    return _page("Mail catcher", f"<h1>Mail catcher: {len(rows)} message(s)</h1>{table}", refresh=True)


def _message_page(path: Path) -> str:
    message = read_message(path)
    fields = {"Date": "Date", "From": "From", "To": "To", "Cc": "Cc", "X-Envelope-To": "Delivered to",
              "Subject": "Subject"}
    header_rows = "".join(f"<tr><th>{label}</th><td>{html.escape(str(message[name]))}</td></tr>"
                          for name, label in fields.items() if message[name] is not None)
    return _page(str(message.get("Subject", path.name)),
                 f'<p><a href="/">&larr; inbox</a> · <a href="/messages/{path.name}.raw">raw</a></p>'
                 f"<table>{header_rows}</table>{_body_html(message)}")


def _body_html(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return "<p>(no text body)</p>"
    text = part.get_content()
    if part.get_content_subtype() == "html":
        # Rendered in a sandbox: no script in a caught mail runs in the inbox's page.
        style = "width:100%;height:70vh;border:1px solid #ddd"
        return f'<iframe sandbox="" style="{style}" srcdoc="{html.escape(text)}"></iframe>'
    # Links clickable: verification and reset mails are what a person opens the inbox for.
    linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', html.escape(text, quote=False))
    return f"<pre>{linked}</pre>"


def _route(directory: Path, target: str) -> tuple[str, str, bytes]:
    """(status, content type, body) for a GET of ``target``."""
    if target in ("/", "/index.html"):
        return "200 OK", "text/html; charset=utf-8", _inbox_page(directory).encode()
    prefix = "/messages/"
    if target.startswith(prefix):
        name = target[len(prefix):]
        raw = name.endswith(".raw")
        name = name.removesuffix(".raw")
        # The name pattern also rules out any path traversal.
        if is_message_name(name) and (directory / name).is_file():
            if raw:
                return "200 OK", "text/plain; charset=utf-8", (directory / name).read_bytes()
            return "200 OK", "text/html; charset=utf-8", _message_page(directory / name).encode()
    return "404 Not Found", "text/plain; charset=utf-8", b"not found\n"


async def _serve_http(directory: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request_line = (await reader.readline()).decode("latin-1").split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # headers are of no use to a read-only inbox
        if len(request_line) >= 2 and request_line[0] in ("GET", "HEAD"):
            status, content_type, body = _route(directory, request_line[1].split("?", 1)[0])
        else:
            status, content_type, body = "405 Method Not Allowed", "text/plain", b"read-only\n"
        head = f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n" \
               "Connection: close\r\n\r\n"
        writer.write(head.encode() + (body if request_line[:1] != ["HEAD"] else b""))
        await writer.drain()
    finally:
        writer.close()


# --- Process --------------------------------------------------------------------------------


async def _run(directory: Path, host: str, smtp_port: int, web_port: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  (once, before serving)
    smtp = await _start_smtp(directory, host, smtp_port)
    web = await asyncio.start_server(lambda r, w: _serve_http(directory, r, w), host, web_port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"mail catcher: SMTP on {host}:{smtp_port}, inbox http://{host}:{web_port}/, files in {directory}",
          flush=True)
    await stopping.wait()
    smtp.close()
    web.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where messages are stored")
    parser.add_argument("--host", default=_HOST, help="the address to listen on (a container's: 0.0.0.0)")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--web-port", type=int, default=8025)
    args = parser.parse_args(argv)
    asyncio.run(_run(args.dir, args.host, args.smtp_port, args.web_port))


if __name__ == "__main__":
    main()
