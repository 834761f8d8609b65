"""An axe-core scan of every page: no serious or critical violation.

axe-core comes from the npm registry through ``web/package-lock.json`` (a devDependency) and
is injected into each page by Playwright. The pages' Content-Security-Policy forbids inline
scripts, so the scanning contexts bypass it (the pages are otherwise as served).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Browsers, ServerProcess, expect, feature_available

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

AXE = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"
if not AXE.exists():
    pytest.skip("axe-core is not installed (run `make web`)", allow_module_level=True)

BLOCKING = ("serious", "critical")

# Violations known on pages whose markup is being reworked elsewhere, by page then rule id.
# Each entry is a debt: clear it once the page is fixed (the test then proves it stays so).
KNOWN: dict[str, set[str]] = {
    "/": set(),
    "/docs/events": set(),
    "/admin": set(),
    "/digest/unsubscribe": set(),
}


def scanning_context(browsers: Browsers) -> Any:
    ctx = browsers.browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    ctx.set_default_timeout(10_000)
    browsers.contexts.append(ctx)
    return ctx


def blocking_violations(page: Any, known: set[str]) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:10]}
            for v in result["violations"]
            if v["impact"] in BLOCKING and v["id"] not in known]


def assert_clean(page: Any, name: str) -> None:
    violations = blocking_violations(page, KNOWN[name])
    assert not violations, f"axe-core on {name}:\n" + json.dumps(violations, indent=2)


@pytest.mark.skipif(not feature_available("chat:send"), reason="no chat feature")
def test_the_demo_page_with_a_room_open(browsers: Browsers) -> None:
    page = browsers.sign_in("alice", ctx=scanning_context(browsers))
    page.fill("#new-room-name", "axe-room")
    page.click("#create-room button[type=submit]")
    expect(page.locator("#chat-title")).to_contain_text("axe-room")
    assert_clean(page, "/")


def test_the_events_reference(browsers: Browsers) -> None:
    page = browsers.open(scanning_context(browsers), "/docs/events")
    assert_clean(page, "/docs/events")


@pytest.mark.skipif(not feature_available("admin:connections"), reason="no admin feature")
def test_the_admin_console_signed_in_as_an_admin(browsers: Browsers) -> None:
    from tests.e2e.test_admin_console import open_admin

    page = open_admin(browsers, "root", ctx=scanning_context(browsers))
    expect(page.locator("#users-table tbody tr")).not_to_have_count(0)
    expect(page.locator("#audit-table tbody tr")).not_to_have_count(0)
    assert_clean(page, "/admin")


def test_the_admin_console_sign_in(browsers: Browsers) -> None:
    page = browsers.open(scanning_context(browsers), "/admin")
    expect(page.locator("#signin")).to_be_visible()
    assert_clean(page, "/admin")


@pytest.mark.skipif(not feature_available("notifications:list"), reason="no notifications")
def test_the_digest_unsubscribe_page(browsers: Browsers, server: ServerProcess) -> None:
    page = browsers.open(scanning_context(browsers), "/digest/unsubscribe?token=not-a-token")
    # a bad link answers 400, and this plain page links no icon: both are what is tested
    browsers.tolerate(page, r"status of 400 .*/digest/unsubscribe|status of 404 .*/favicon.ico")
    expect(page.locator("h1")).to_have_text("This link does not work")
    assert_clean(page, "/digest/unsubscribe")
