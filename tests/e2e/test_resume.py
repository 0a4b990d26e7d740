"""The product's promise, in a real browser: drop the connection or reload the
page mid-answer, and the answer still arrives whole, in place, with nothing doubled."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Request, expect

from tests.e2e.chat import Chat, text_of
from tests.e2e.proxy import CuttableProxy
from tests.e2e.support import BROWSER_NET_ERRORS, Spool, chat_tab
from tests.harness import Stack

pytestmark = pytest.mark.e2e

# Long enough to still be streaming after a cut or a reload, and full of
# characters that would show a split or doubled chunk (combining marks, CJK, emoji).
ANSWER = "".join(
    f"Part {n}: the log keeps café, naïve, 東京 and 🚀 safe across drops. " for n in range(1, 31)
)
PACE = {"text": ANSWER, "tokens_per_second": 40, "ttft_ms": 50}
OFFLINE_S = 2.0  # long enough for the server to stream on while the page can't listen


def _events_requests(chat: Chat) -> list[Request]:
    seen: list[Request] = []
    chat.page.on("request", lambda r: seen.append(r) if "/events" in r.url else None)
    return seen


def test_connection_cut_mid_answer_resumes_exactly(
    proxied_chat: Chat, proxy: CuttableProxy, spool: Spool
) -> None:
    chat = proxied_chat
    chat.allow_console(BROWSER_NET_ERRORS)  # Chromium logs the failed reconnects itself
    chat.open()
    chat.set_mock(PACE)
    events = _events_requests(chat)
    answer = chat.ask("Keep talking while I lose the network")
    chat.wait_for_text(answer, 60)

    proxy.set_down(True)
    assert proxy.cut() >= 1, "the live event stream should have been cut"
    expect(answer.locator("[data-state]")).to_have_text("Reconnecting…")
    time.sleep(OFFLINE_S)
    proxy.set_down(False)
    expect(answer.locator("[data-state]")).not_to_have_text("Reconnecting…")

    # Two more cuts without downtime, the way a flaky network does it.
    for chars in (len(text_of(answer)) + 40, len(text_of(answer)) + 120):
        if chars < len(ANSWER) - 40:
            chat.wait_for_text(answer, chars)
            proxy.cut()

    chat.wait_status(answer, "done")
    record = spool.record(chat.generation_id(answer))
    assert record["text"] == ANSWER
    assert text_of(answer) == ANSWER
    resumed = [r for r in events if r.header_value("last-event-id") or "after=" in r.url]
    assert resumed, "reconnects must resume by Last-Event-ID (or after=), not from the start"


def test_reload_mid_answer_restores_and_reattaches(chat: Chat, spool: Spool) -> None:
    chat.open()
    chat.set_mock(PACE)
    answer = chat.ask("Keep talking while I reload")
    shown = chat.wait_for_text(answer, 60)
    generation_id = chat.generation_id(answer)

    events = _events_requests(chat)
    chat.page.reload()
    expect(chat.page.locator(".msg.user .bubble")).to_have_text("Keep talking while I reload")
    answer = chat.answers().first
    expect(answer).to_have_attribute("data-generation-id", generation_id)
    assert text_of(answer).startswith(shown), "the text already shown must come back at once"

    chat.wait_status(answer, "done")
    assert text_of(answer) == ANSWER == spool.record(generation_id)["text"]
    after = [int(r.url.rsplit("after=", 1)[1].split("&")[0]) for r in events if "after=" in r.url]
    assert after and after[0] > 0, "re-attach must continue after the last rendered event"

    # A finished answer is restored from storage alone: no stream is reopened.
    events.clear()
    chat.page.reload()
    answer = chat.answers().first
    expect(answer).to_have_attribute("data-status", "done")
    assert text_of(answer) == ANSWER
    expect(answer.locator('[data-stat="finish"]')).to_have_text("stop")
    chat.page.wait_for_timeout(500)
    assert not events


def test_web_process_restart_mid_answer(
    browser: Any, make_stack: Callable[..., Stack], request: pytest.FixtureRequest
) -> None:
    """A deploy, as the page sees it: the web process dies and comes back on its port."""
    stack = make_stack()
    spool = Spool(url=stack.base_url)
    with chat_tab(browser, spool.url, request) as chat:
        chat.allow_console(BROWSER_NET_ERRORS)
        chat.open()
        chat.set_mock(PACE)
        answer = chat.ask("Keep talking through a deploy")
        chat.wait_for_text(answer, 60)

        port = stack.webs[0].port
        stack.webs[0].kill()
        expect(answer.locator("[data-state]")).to_have_text("Reconnecting…")
        stack.start_web(port=port)

        chat.wait_status(answer, "done")
        assert text_of(answer) == ANSWER == spool.record(chat.generation_id(answer))["text"]
