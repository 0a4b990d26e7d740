"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, against
real gunicorn + worker processes booted by the harness in tests/conftest.py
(`stack` for the shared dev-mode server, `make_stack` for one with API keys).

Locally, a machine without /usr/bin/chromium skips these tests with a message
saying how to get it; with `CI` set, a missing browser is a failure, so CI can
never go green by silently skipping the browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.proxy import CuttableProxy
from tests.e2e.support import Spool, chat_tab
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
EXPECT_TIMEOUT_MS = 15_000

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


@pytest.fixture(scope="module")
def spool(stack: Stack) -> Spool:
    """The harness's shared stack (real gunicorn + worker on a private Redis), dev mode."""
    return Spool(url=stack.base_url)


@pytest.fixture
def chat(browser: Any, spool: Spool, request: pytest.FixtureRequest) -> Iterator[Chat]:
    """A fresh browser context (empty localStorage) on the chat page's server."""
    with chat_tab(browser, spool.url, request) as tab:
        yield tab


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
    with chat_tab(browser, proxy.url, request) as tab:
        yield tab
