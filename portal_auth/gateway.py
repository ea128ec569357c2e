"""The gateway in front of the portal: nginx from the distribution, configured here for local use.

It passes the portal host and the client address on as X-Forwarded-Host / X-Forwarded-For;
identity believes them because the gateway's address is in TRUSTED_PROXIES.

When identity does not answer (refused, timed out), the gateway answers itself, 503 with
Retry-After: the portal's page from ``PAGES`` (``unavailable.html``), and for the JSON API
(``/auth/*``) the contract's ``service_unavailable`` problem (``unavailable.json``). Identity's own
answers, a 503 for its database among them, pass through unchanged.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from portal_auth.devstack._net import port_accepts
from portal_auth.devstack._proc import ManagedProcess, wait_until

# The gateway's own pages, one file each, for any nginx in front of identity (compose too).
PAGES = Path(__file__).resolve().parent / "gateway_pages"
RETRY_AFTER_SECONDS = 5

CONFIG = """\
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    # The path only: confirmation and reset links carry their token in the query string.
    log_format portal '$remote_addr [$time_local] "$request_method $uri" $status $request_time';
    access_log {workdir}/access.log portal;
    client_body_temp_path {workdir}/tmp/body;
    proxy_temp_path {workdir}/tmp/proxy;
    fastcgi_temp_path {workdir}/tmp/fastcgi;
    uwsgi_temp_path {workdir}/tmp/uwsgi;
    scgi_temp_path {workdir}/tmp/scgi;
    client_max_body_size 64k;
    # A coarse first line against floods: POSTs per client address, counted across every
    # organization and identity replica. Identity's own per-organization limits are finer.
    map $request_method $portal_post_source {{ POST $binary_remote_addr; default ""; }}
    limit_req_zone $portal_post_source zone=portal_posts:10m rate={post_rate};
    limit_req_status 429;
    upstream identity {{ server 127.0.0.1:{identity_port}; keepalive 16; }}
    map $uri $unavailable {{ ~^/auth/ /.gateway/unavailable.json; default /.gateway/unavailable.html; }}
    server {{
        listen 127.0.0.1:{port};
        # nginx's own 502/504 (identity refused or timed out) become the gateway's 503 page.
        error_page 502 504 =503 $unavailable;
        # Here, not in a location: a location's own error_page would drop the ones above.
        error_page 429 = @too_many_requests;
        location /.gateway/ {{
            internal;
            alias {pages}/;
            types {{ text/html html; application/problem+json json; }}
            charset utf-8;
            add_header Retry-After {retry_after} always;
            add_header Cache-Control no-store always;
        }}
        location / {{
            limit_req zone=portal_posts burst={post_burst} nodelay;
            proxy_pass http://identity;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_connect_timeout 2s;
            proxy_read_timeout 10s;
        }}
        location @too_many_requests {{
            default_type application/problem+json;
            add_header Retry-After 1 always;
            return 429 '{{"type":"about:blank","status":429,"title":"Too many attempts, try again shortly","code":"too_many_requests"}}';
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def start_gateway(workdir: Path, *, port: int, identity_port: int, post_rate: str = "20r/s",
                  post_burst: int = 40) -> ManagedProcess | None:
    """nginx on ``port`` in front of identity, or None where nginx is not installed. ``post_rate``
    and ``post_burst`` bound the POSTs of one client address (nginx's ``limit_req``)."""
    binary = nginx_binary()
    if binary is None:
        return None
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(CONFIG.format(workdir=workdir, port=port, identity_port=identity_port, pages=PAGES,
                                  retry_after=RETRY_AFTER_SECONDS, post_rate=post_rate, post_burst=post_burst))
    process = ManagedProcess("gateway", [binary, "-c", str(conf), "-p", str(workdir), "-g", "daemon off;"],
                             workdir / "gateway.log", stop_signal=signal.SIGQUIT)
    process.start()
    wait_until(lambda: port_accepts(port), process=process, timeout=10, what="nginx")
    return process
