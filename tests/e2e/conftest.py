"""End-to-end world: a real ``dihya-realtime serve --dev`` process and Debian's Chromium.

Playwright for Python drives ``/usr/bin/chromium`` (``make test`` installs it through
``scripts/ensure_browser.sh``; Playwright's own browser download is never used). Every page
is watched: a console error or an uncaught page error fails the test. Each test leaves a
screenshot of its final state under ``test-artifacts/e2e/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REDIS_URL, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
API_KEY = "e2e-" + uuid.uuid4().hex
STATIC = Path(__file__).resolve().parents[2] / "src" / "dihya_realtime" / "static" / "app.js"

playwright_api = pytest.importorskip("playwright.sync_api")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"{CHROMIUM} is not installed (run scripts/ensure_browser.sh)",
                allow_module_level=True)
if not STATIC.exists():
    pytest.skip("the web bundle is not built (run `make web`)", allow_module_level=True)

pytestmark = pytest.mark.e2e


def feature_available(event: str) -> bool:
    """Is ``event`` declared (chat and notifications are separate features)?"""
    import dihya_realtime.app  # noqa: F401 - declares every event
    from dihya_realtime.kernel.registry import registry

    return event in registry.events


class ServerProcess:
    """One ``dihya-realtime serve --dev`` process that a test can stop and start again.

    The database file, the Redis prefix, the dev secret (in ``cwd``) and the port survive a
    restart, as they would for a real deployment, so tokens and history stay valid.
    """

    def __init__(self, workdir: Path, redis_prefix: str) -> None:
        from dihya_realtime.kernel.auth import hash_api_key

        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DIHYA_RT_DATABASE_URL": f"sqlite:///{workdir / 'e2e.db'}",
            "DIHYA_RT_API_KEYS": hash_api_key(API_KEY),
            "DIHYA_RT_REDIS_URL": REDIS_URL,
            "DIHYA_RT_REDIS_PREFIX": redis_prefix,
            "DIHYA_RT_AUDIT_LOG": str(workdir / "audit.log"),
            "DIHYA_RT_PRESENCE_TTL": "6",
        }
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "server.log"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dihya_realtime.cli", "serve", "--dev",
                 "--port", str(self.port)],
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log.read_text()[-3000:])
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """Call the HTTP API with the test API key; returns the JSON body (any status)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())


def wait_ready_status(server: ServerProcess, status: int, timeout: float = 15.0) -> bool:
    """Wait until ``/readyz`` answers ``status`` (503 while the broker's links are down)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.url + "/readyz", timeout=1) as response:
                got = response.status
        except urllib.error.HTTPError as exc:
            got = exc.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            got = 0
        if got == status:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def server(tmp_path: Path, redis_prefix: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, redis_prefix)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Any
    errors: list[str] = field(default_factory=list)
    tolerated: list[re.Pattern] = field(default_factory=list)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.tolerated)]


FULL_PAGE_SHOT_MAX_HEIGHT = 4000  # px


class Browsers:
    """Opens pages in separate browser contexts (one per user) and checks them at the end."""

    def __init__(self, browser: Any, server: ServerProcess, name: str) -> None:
        self.browser = browser
        self.server = server
        self.name = name
        self.contexts: list[Any] = []
        self.pages: list[Watched] = []

    def context(self) -> Any:
        ctx = self.browser.new_context(viewport={"width": 1280, "height": 860})
        ctx.set_default_timeout(10_000)
        self.contexts.append(ctx)
        return ctx

    def open(self, ctx: Any, path: str = "/") -> Any:
        page = ctx.new_page()
        watched = Watched(page)
        page.on("console", lambda msg: msg.type == "error" and watched.errors.append(
            f"console: {msg.text} ({msg.location.get('url', '')})"))
        page.on("pageerror", lambda exc: watched.errors.append(f"pageerror: {exc}"))
        self.pages.append(watched)
        page.goto(self.server.url + path)
        return page

    def sign_in(self, user: str, roles: tuple[str, ...] = ("user",), ctx: Any = None) -> Any:
        """A new context (unless given) with ``user`` signed in through the dev form."""
        page = self.open(ctx or self.context())
        page.fill("#signin-user", user)
        for box in page.locator("input[name=roles]").all():
            box.set_checked(box.get_attribute("value") in roles)
        page.click("#signin-form button[type=submit]")
        expect(page.locator("#conn-state")).to_have_text("connected")
        return page

    def tolerate(self, page: Any, pattern: str) -> None:
        """Errors matching ``pattern`` are expected on ``page`` (e.g. while the server is down)."""
        for watched in self.pages:
            if watched.page is page:
                watched.tolerated.append(re.compile(pattern))

    def finish(self) -> list[str]:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        problems = []
        for i, watched in enumerate(self.pages):
            if not watched.page.is_closed():
                # the whole page, unless it is a long one (the events reference): Chromium
                # takes longer than the timeout to paint it whole, so its first screen is kept
                height = watched.page.evaluate("() => document.documentElement.scrollHeight")
                watched.page.screenshot(path=str(ARTIFACTS / f"{self.name}-{i}.png"),
                                        full_page=height <= FULL_PAGE_SHOT_MAX_HEIGHT)
            problems += watched.unexpected_errors()
        for ctx in self.contexts:
            ctx.close()
        return problems


def expect(locator: Any) -> Any:
    return playwright_api.expect(locator)


@pytest.fixture
def browsers(browser: Any, server: ServerProcess, request: pytest.FixtureRequest
             ) -> Iterator[Browsers]:
    """Pages on the test server; fails the test on any console or page error."""
    opened = Browsers(browser, server, re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name))
    yield opened
    problems = opened.finish()
    assert not problems, "errors in the browser:\n" + "\n".join(problems)


@pytest.fixture
def api(server: ServerProcess) -> Callable[..., dict[str, Any]]:
    return server.api
