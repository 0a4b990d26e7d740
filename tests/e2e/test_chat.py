"""The chat page in real Chromium: streaming, Stop, tool calls, errors, keyboard use."""

from __future__ import annotations

import json
import math
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from tests.e2e.chat import Chat, text_of
from tests.e2e.support import Spool

pytestmark = pytest.mark.e2e

ANSWER = "Spool keeps every token in an ordered log, so a reader can always catch up. ✓ — 北京"
LONG_ANSWER = " ".join(f"Sentence number {n} of a long, patient answer." for n in range(1, 40))


def test_message_streams_into_the_page(chat: Chat, spool: Spool) -> None:
    chat.open()
    chat.set_mock({"text": ANSWER, "tokens_per_second": 15, "ttft_ms": 100})
    answer = chat.ask("Tell me about Spool")

    expect(chat.page.locator(".msg.user .bubble")).to_have_text("Tell me about Spool")
    partial = chat.wait_for_text(answer, 8)
    # Seen mid-stream: part of the answer, a cursor, and not yet the whole text.
    assert ANSWER.startswith(partial) and partial != ANSWER
    expect(answer.locator(".cursor")).to_be_visible()
    expect(answer.locator(".answer")).to_have_attribute("aria-live", "polite")

    chat.wait_status(answer, "done")
    record = spool.record(chat.generation_id(answer))
    assert text_of(answer) == ANSWER == record["text"]
    expect(answer.locator(".cursor")).to_be_hidden()
    expect(answer.locator('[data-stat="tokens"]')).to_have_text(
        str(record["usage"]["output_tokens"])
    )
    expect(answer.locator('[data-stat="finish"]')).to_have_text("stop")
    ttft_ms = math.floor(record["metrics"]["ttft_ms"] + 0.5)  # JavaScript's Math.round
    expect(answer.locator('[data-stat="ttft"]')).to_have_text(f"{ttft_ms} ms")
    expect(answer.locator('[data-stat="speed"]')).to_contain_text("tok/s")


def test_history_is_sent_with_each_request(chat: Chat) -> None:
    chat.open()
    chat.set_mock({"text": "First answer.", "tokens_per_second": 0, "ttft_ms": 0})
    chat.wait_status(chat.ask("first question"), "done")
    with chat.page.expect_request("**/v1/generations") as sent:
        chat.ask("second question")
    body = sent.value.post_data_json
    assert body is not None
    assert body["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "second question"},
    ]
    assert body["provider"] == "mock"
    assert body["mock"] == {"text": "First answer.", "tokens_per_second": 0, "ttft_ms": 0}
    chat.wait_status(chat.answers().nth(1), "done")


def test_model_pickers_list_the_configured_models(chat: Chat) -> None:
    chat.open()
    expect(chat.page.locator("#provider")).to_have_value("mock")
    models = chat.page.locator("#model option").all_text_contents()
    assert models and all("/" not in m for m in models)


def test_stop_ends_the_answer_marked_stopped(chat: Chat, spool: Spool) -> None:
    chat.open()
    chat.set_mock({"text": LONG_ANSWER, "tokens_per_second": 10, "ttft_ms": 50})
    answer = chat.ask("Talk for a while")
    chat.wait_for_text(answer, 12)
    chat.page.click("#stop")

    chat.wait_status(answer, "stopped")
    expect(answer.locator("[data-state]")).to_have_text("Stopped")
    expect(chat.page.locator("#send")).to_be_visible()
    record = spool.record(chat.generation_id(answer))
    assert record["status"] == "cancelled"
    assert record["finish_reason"] == "cancelled"
    # Exactly what the server had when it stopped: nothing lost, nothing invented.
    assert text_of(answer) == record["text"]
    assert len(record["text"]) < len(LONG_ANSWER)


def test_tool_call_is_shown_as_a_card(chat: Chat, spool: Spool) -> None:
    chat.open()
    chat.set_mock(
        {
            "text": "Let me look that up.",
            "tokens_per_second": 0,
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}
            ],
        }
    )
    answer = chat.ask("Weather in Oslo?")
    chat.wait_status(answer, "done")

    card = answer.locator(".tool-card")
    expect(card).to_have_count(1)
    expect(card.locator(".tool-name")).to_have_text("get_weather")
    expect(card.locator(".tool-args")).to_contain_text('"city": "Oslo"')
    expect(answer.locator('[data-stat="finish"]')).to_have_text("tool_calls")
    record = spool.record(chat.generation_id(answer))
    assert record["tool_calls"][0]["arguments"] == {"city": "Oslo", "unit": "celsius"}


def test_error_is_shown_inline_and_retry_recovers(chat: Chat, spool: Spool) -> None:
    chat.open()
    chat.set_mock(
        {
            "text": "This answer breaks after a few tokens.",
            "tokens_per_second": 0,
            "fail_after_tokens": 3,
            "fail_with": "server_error",
        }
    )
    answer = chat.ask("Please fail")
    chat.wait_status(answer, "error")
    failed_id = chat.generation_id(answer)
    error = answer.locator(".error")
    expect(error).to_be_visible()
    expect(error.locator(".error-text")).not_to_be_empty()
    record = spool.record(failed_id)
    assert record["status"] == "failed"
    assert text_of(answer) == record["text"]  # the partial text stays, exactly

    chat.set_mock({"text": "Recovered.", "tokens_per_second": 0})
    error.locator(".retry").click()
    expect(chat.answers()).to_have_count(1)  # the failed turn is replaced, not stacked
    retried = chat.answers().first
    chat.wait_status(retried, "done")
    assert chat.generation_id(retried) != failed_id
    assert text_of(retried) == "Recovered."


def test_keyboard_only_enter_shift_enter_and_escape(chat: Chat) -> None:
    chat.open()
    chat.set_mock({"text": LONG_ANSWER, "tokens_per_second": 10, "ttft_ms": 50})
    prompt = chat.page.locator("#prompt")
    prompt.focus()
    chat.page.keyboard.type("line one")
    chat.page.keyboard.press("Shift+Enter")
    chat.page.keyboard.type("line two")
    expect(prompt).to_have_value("line one\nline two")
    chat.page.keyboard.press("Enter")

    expect(chat.page.locator(".msg.user .bubble")).to_have_text("line one\nline two")
    expect(prompt).to_have_value("")
    answer = chat.answers().first
    chat.wait_for_text(answer, 4)
    chat.page.keyboard.press("Escape")
    chat.wait_status(answer, "stopped")
    expect(prompt).to_be_focused()


def test_new_chat_clears_the_conversation(chat: Chat) -> None:
    chat.open()
    chat.set_mock({"text": "Short.", "tokens_per_second": 0})
    chat.wait_status(chat.ask("hello"), "done")
    chat.page.click("#new-chat")
    expect(chat.page.locator(".msg")).to_have_count(0)
    expect(chat.page.locator("#empty")).to_be_visible()
    chat.page.reload()
    expect(chat.page.locator(".msg")).to_have_count(0)


def test_mock_options_can_come_from_the_url(chat: Chat) -> None:
    options = {"text": "Configured from the address bar.", "tokens_per_second": 0}
    chat.open("?" + urlencode({"mock": json.dumps(options)}))
    answer = chat.ask("hi")
    chat.wait_status(answer, "done")
    assert text_of(answer) == options["text"]


def test_an_answer_gone_from_the_server_is_marked_unavailable(chat: Chat) -> None:
    # A conversation saved by an earlier visit, whose generation the server no
    # longer knows (e.g. Redis was wiped): the page must say so, not spin forever.
    chat.allow_console(r"status of 404")
    missing = "gen_" + "A" * 22
    saved = {
        "turns": [
            {"role": "user", "content": "from last week"},
            {
                "role": "assistant",
                "id": missing,
                "text": "Half an ans",
                "lastId": 5,
                "streamUrl": f"/v1/generations/{missing}/events?token=x",
                "status": "streaming",
                "phase": "streaming",
                "toolCalls": [],
                "stats": None,
                "error": "",
                "notice": "",
            },
        ]
    }
    chat.page.add_init_script(
        f"localStorage.setItem('spool.chat.v1', {json.dumps(json.dumps(saved))})"
    )
    chat.open()
    answer = chat.answers().first
    chat.wait_status(answer, "lost")
    expect(answer.locator(".error-text")).to_contain_text("no longer available")
    assert text_of(answer) == "Half an ans"
    expect(chat.page.locator("#send")).to_be_visible()
