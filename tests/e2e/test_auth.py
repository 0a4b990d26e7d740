"""The page on a server with API keys: a clear inline ask for the key, then it just works."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.chat import Chat, text_of
from tests.e2e.support import Spool, chat_tab
from tests.harness import Stack

pytestmark = pytest.mark.e2e

API_KEY = "sk-e2e-browser-key"
SECRET = "e2e-browser-tests-stream-token-signing-secret"


@pytest.fixture
def keyed_spool(make_stack: Callable[..., Stack]) -> Spool:
    """A Spool with authentication on."""
    stack = make_stack(env={"SPOOL_API_KEYS": f"acme:{API_KEY}", "SPOOL_SECRET_KEY": SECRET})
    return Spool(url=stack.base_url, api_key=API_KEY)


@pytest.fixture
def keyed_chat(browser: Any, keyed_spool: Spool, request: pytest.FixtureRequest) -> Iterator[Chat]:
    """The chat page served by the keyed Spool."""
    with chat_tab(browser, keyed_spool.url, request) as tab:
        yield tab


def test_missing_key_is_asked_for_inline_then_used(keyed_chat: Chat, keyed_spool: Spool) -> None:
    chat = keyed_chat
    chat.allow_console(r"status of 401")  # Chromium logs each 401 response itself
    chat.open()
    expect(chat.page.locator("#banner")).to_contain_text("API key")
    expect(chat.page.locator("#api-key")).to_be_focused()

    chat.set_mock({"text": "Authorized answer.", "tokens_per_second": 0})
    answer = chat.ask("hello?")
    chat.wait_status(answer, "error")
    expect(answer.locator(".error-text")).to_contain_text("needs an API key")

    chat.page.fill("#api-key", API_KEY)
    chat.page.press("#api-key", "Enter")
    expect(chat.page.locator("#banner")).to_be_hidden()
    expect(chat.page.locator("#provider")).to_have_value("mock")
    answer.locator(".retry").click()
    answer = chat.answers().first
    chat.wait_status(answer, "done")  # the stream itself authenticates with its token
    assert text_of(answer) == "Authorized answer."
    assert keyed_spool.record(chat.generation_id(answer))["text"] == "Authorized answer."

    chat.page.reload()  # the key is remembered by this browser
    expect(chat.page.locator("#api-key")).to_have_value(API_KEY)
    expect(chat.page.locator("#banner")).to_be_hidden()
