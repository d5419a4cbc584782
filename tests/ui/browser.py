"""Driving Debian's Chromium with Playwright, offline, and the small helpers the browser tests share.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (``make test``
installs it with apt). A missing browser or axe-core is a test failure with a message saying how
to install it, never a silent skip. Screenshots go to ``.run/ui-screenshots/``; with
``UPDATE_DOCS_SCREENSHOTS=1`` they are also written to ``docs/img/`` (the ones the docs show).
"""

from __future__ import annotations

import http.client
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from devstack.paths import REPO_ROOT

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = REPO_ROOT / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = REPO_ROOT / ".run" / "ui-screenshots"
DOCS_IMG = REPO_ROOT / "docs" / "img"


TOKEN = "browser-test-token"  # the token stacks' API_TOKEN (conftest.py)
OWNERS = {"alice": "alice-page-token", "bob": "bob-page-token"}  # the owners stack's named tokens
FINAL_TIMEOUT = 60_000  # ms: generous, the machine is shared


def new_context(browser, **options):
    """A browser context whose clicks, fills and navigations wait as long as the checks do (only bounds a
    hang: Playwright's own 30 s is not always enough on a loaded 2-core machine)."""
    context = browser.new_context(**options)
    context.set_default_timeout(FINAL_TIMEOUT)
    return context


def patient_expect():
    """Playwright's ``expect`` with ``FINAL_TIMEOUT``: only bounds a hang (a loaded 2-core machine made
    its 5 s, then 15 s, too tight)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=FINAL_TIMEOUT)
    return expect


def api_submit(url, operation, params=None, token=None):
    """Submit through the API itself (not the page): the job id of its 202."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.post(
        f"{url}/submit", json={"operation": operation, "params": params or {}}, headers=headers, timeout=10
    )
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def launch(playwright):
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install it with 'apt-get install chromium' (make test does, "
            "as root) or set CHROMIUM_PATH; the web page tests need a real browser",
            pytrace=False,
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): scripts/bootstrap.sh installs it with npm", pytrace=False)
    return AXE.read_text()


def screenshot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(path, DOCS_IMG / f"{name}.png")
    return path


class PrefixProxy:
    """An Ingress-like reverse proxy on loopback: ``/<prefix>/x`` -> upstream ``/x`` (the prefix
    stripped, as nginx-ingress's rewrite-target does), so the API never learns its prefix."""

    def __init__(self, upstream_port: int, prefix: str):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                if not self.path.startswith(proxy.prefix + "/"):
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                headers["Host"] = f"127.0.0.1:{upstream_port}"
                conn.request(self.command, self.path[len(proxy.prefix) :], body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_DELETE = _forward  # noqa: N815 (http.server's method names)

        self.prefix = prefix
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.prefix}"

    def __enter__(self) -> PrefixProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
