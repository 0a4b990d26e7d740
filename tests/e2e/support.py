"""Shared pieces of the browser tests that are not fixtures: the Spool handle,
viewport sizes, and `chat_tab`, which opens a checked browser tab.

Nothing here imports Playwright at module level, so conftest.py can import it
on a machine without Playwright and still report why the tests did not run.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from tests.e2e.chat import Chat

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
HTTP_TIMEOUT_S = 10
BROWSER_NET_ERRORS = r"net::ERR_|Failed to load resource"


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


def _screenshot_failure(page: Any, request: pytest.FixtureRequest) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    page.screenshot(path=str(ARTIFACTS / f"failure-{name}.png"), full_page=True)


@contextlib.contextmanager
def chat_tab(
    browser: Any, url: str, request: pytest.FixtureRequest, **context: Any
) -> Iterator[Chat]:
    """A fresh browser context (empty localStorage) on `url`'s chat page.

    On the way out: a screenshot if the test failed, and a failure if the page
    logged console errors the test did not expect.
    """
    from tests.e2e.chat import Chat  # needs Playwright, so only once a browser runs

    # Reduced motion stops the cursor's blink: a blinking cursor is invisible
    # half the time, so "the cursor shows while streaming" would be a race.
    context.setdefault("reduced_motion", "reduce")
    ctx = browser.new_context(viewport=context.pop("viewport", DESKTOP), **context)
    chat = Chat(page=ctx.new_page(), base_url=url)
    chat.watch_console()
    try:
        yield chat
    except BaseException:
        _screenshot_failure(chat.page, request)
        ctx.close()
        raise
    failed = getattr(request.node, "rep_call", None)  # set by tests/conftest.py's hook
    if failed is not None and failed.failed:
        _screenshot_failure(chat.page, request)
    unexpected = chat.unexpected_console_errors()
    ctx.close()
    assert not unexpected, f"console errors on the page: {unexpected}"
