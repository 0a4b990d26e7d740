"""A thin driver for the demo chat page: what a user does, in test vocabulary.

Everything goes through the page's real controls (the mock options field is
filled by opening the Settings panel, like a person would), so a test that
passes here passed for a keyboard-and-mouse user too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Locator, Page, expect

STREAM_TIMEOUT_MS = 30_000  # generous: the machine is shared and noisy


@dataclass
class Chat:
    """One browser tab on the chat page, plus the console problems it logged."""

    page: Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def watch_console(self) -> None:
        """Record console errors and uncaught exceptions for the end-of-test check."""
        self.page.on(
            "console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))

    def allow_console(self, pattern: str) -> None:
        """Tolerate console errors matching `pattern` (e.g. the browser's own net::ERR_ lines
        while a test deliberately cuts the network)."""
        self.allowed.append(re.compile(pattern))

    def unexpected_console_errors(self) -> list[str]:
        """Console errors no test asked to tolerate."""
        return [e for e in self.console_errors if not any(p.search(e) for p in self.allowed)]

    def open(self, query: str = "") -> None:
        """Load `/` and wait until the model pickers are filled from GET /v1/models."""
        self.page.goto(f"{self.base_url}/{query}")
        expect(self.page.locator("#provider option")).not_to_have_count(0)

    def set_mock(self, options: dict[str, Any] | None) -> None:
        """Type mock-provider options into the Settings panel, then close it."""
        settings = self.page.locator("#settings")
        if not settings.evaluate("el => el.open"):
            self.page.click("#settings summary")
        self.page.fill("#mock-options", json.dumps(options) if options else "")
        self.page.click("#settings summary")

    def ask(self, text: str) -> Locator:
        """Type a message, press Enter, and return the new answer's locator."""
        before = self.answers().count()
        self.page.fill("#prompt", text)
        self.page.press("#prompt", "Enter")
        expect(self.answers()).to_have_count(before + 1)
        return self.answers().nth(before)

    def answers(self) -> Locator:
        """All assistant turns, oldest first."""
        return self.page.locator(".msg.assistant")

    def wait_status(self, answer: Locator, status: str) -> None:
        """Wait until an answer reaches `status` (streaming, done, stopped, error, …)."""
        expect(answer).to_have_attribute("data-status", status, timeout=STREAM_TIMEOUT_MS)

    def wait_for_text(self, answer: Locator, min_chars: int) -> str:
        """Wait until at least `min_chars` of an answer are on screen while it still streams."""
        handle = answer.element_handle()
        self.page.wait_for_function(
            "([el, n]) => el.dataset.status === 'streaming'"
            " && el.querySelector('.text').textContent.length >= n",
            arg=[handle, min_chars],
            timeout=STREAM_TIMEOUT_MS,
        )
        return text_of(answer)

    def generation_id(self, answer: Locator) -> str:
        """The generation id the page attached to this answer."""
        expect(answer).to_have_attribute("data-generation-id", re.compile(r"^gen_"))
        value = answer.get_attribute("data-generation-id")
        assert value is not None
        return value


def text_of(answer: Locator) -> str:
    """The answer's text exactly as rendered (no trimming: doubled spaces would matter)."""
    return answer.locator(".text").evaluate("el => el.textContent")
