"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, against
real gunicorn + worker processes booted by the harness in tests/conftest.py
(`stack` for the shared dev-mode server, `make_stack` for one with API keys).

Locally, a machine without /usr/bin/chromium skips these tests with a message
saying how to get it; with `CI` set, a missing browser is a failure, so CI can
never go green by silently skipping the browser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.proxy import CuttableProxy
from tests.harness import Stack

if TYPE_CHECKING:
    from tests.e2e.chat import Chat

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
EXPECT_TIMEOUT_MS = 15_000
HTTP_TIMEOUT_S = 10

PLAYWRIGHT_MISSING = "Playwright is not installed: run `.venv/bin/pip install -e '.[dev]'`"

if find_spec("playwright") is None and not os.environ.get("CI"):
    # The test modules import Playwright; without it, leave them out (and say so in
    # the header) instead of erroring the whole session. Under CI they error loudly.
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header() -> str:
        """Say why the browser tests were not collected."""
        return f"browser tests not collected: {PLAYWRIGHT_MISSING}"


def _missing_browser(reason: str) -> None:
    message = f"browser tests need {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: a missing browser fails instead of skipping)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session (never downloaded by Playwright)."""
    if not CHROMIUM.exists():
        _missing_browser(f"{CHROMIUM}: run `apt-get install -y chromium`")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Spool:
    """A running Spool (web + worker) as the tests see it."""

    url: str
    api_key: str | None = None

    def record(self, generation_id: str) -> dict[str, Any]:
        """GET /v1/generations/{id}, straight from the web process (not through the page)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        res = requests.get(
            f"{self.url}/v1/generations/{generation_id}", headers=headers, timeout=HTTP_TIMEOUT_S
        )
        res.raise_for_status()
        body: dict[str, Any] = res.json()
        return body


@pytest.fixture(scope="module")
def spool(stack: Stack) -> Spool:
    """The harness's shared stack (real gunicorn + worker on a private Redis), dev mode."""
    return Spool(url=stack.base_url)


def _new_chat(
    browser: Any, url: str, request: pytest.FixtureRequest, **context: Any
) -> Iterator[Chat]:
    from tests.e2e.chat import Chat  # needs Playwright, so only once a browser runs

    ctx = browser.new_context(viewport=context.pop("viewport", DESKTOP), **context)
    page = ctx.new_page()
    chat = Chat(page=page, base_url=url)
    chat.watch_console()
    yield chat
    failed = getattr(request.node, "rep_call", None)  # set by tests/conftest.py's hook
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        page.screenshot(path=str(ARTIFACTS / f"failure-{name}.png"), full_page=True)
    unexpected = chat.unexpected_console_errors()
    ctx.close()
    assert not unexpected, f"console errors on the page: {unexpected}"


@pytest.fixture
def chat(browser: Any, spool: Spool, request: pytest.FixtureRequest) -> Iterator[Chat]:
    """A fresh browser context (empty localStorage) on the chat page's server."""
    yield from _new_chat(browser, spool.url, request)


@pytest.fixture
def proxy(spool: Spool) -> Iterator[CuttableProxy]:
    """A cuttable TCP proxy in front of the web process."""
    port = urlsplit(spool.url).port
    assert port is not None
    cuttable = CuttableProxy(port)
    yield cuttable
    cuttable.close()


@pytest.fixture
def proxied_chat(
    browser: Any, proxy: CuttableProxy, request: pytest.FixtureRequest
) -> Iterator[Chat]:
    """A chat page loaded through the proxy, so the test can cut its connections."""
    yield from _new_chat(browser, proxy.url, request)
