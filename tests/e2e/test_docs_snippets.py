"""The client snippets in docs/browser.md, run as written in Chromium, with the
connection cut mid-answer: the documentation's code must keep its promise too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Request

from tests.e2e.chat import STREAM_TIMEOUT_MS, Chat
from tests.e2e.proxy import CuttableProxy
from tests.e2e.support import BROWSER_NET_ERRORS, Spool

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "browser.md"
CUT_AFTER_CHARS = 40
PROMPT = "Explain, slowly and at length, why a log beats a socket. " * 2
MOCK = {
    "text": "".join(
        f"Chunk {n}: ünïcödé, 中文, and 🎉🎈 emoji survive offsets. " for n in range(12)
    ),
    "tokens_per_second": 40,
    "ttft_ms": 50,
}


def snippet(name: str) -> str:
    """The ```js block that follows `<!-- snippet: name -->` in docs/browser.md."""
    found = re.search(rf"<!-- snippet: {name} -->\s*```js\n(.*?)```", DOC.read_text(), re.S)
    assert found, f"docs/browser.md lost its {name!r} snippet"
    return found.group(1)


def _load(chat: Chat, proxy: CuttableProxy, name: str) -> None:
    chat.allow_console(BROWSER_NET_ERRORS)
    # Any same-origin page will do; a bare one keeps the chat app out of the way.
    chat.page.goto(f"{proxy.url}/healthz")
    chat.page.add_script_tag(content=snippet(name))


def _cut_mid_answer(chat: Chat, proxy: CuttableProxy) -> dict[str, Any]:
    chat.page.wait_for_function(f"window.seen.length >= {CUT_AFTER_CHARS}")
    assert proxy.cut() >= 1
    chat.page.wait_for_function("window.final || window.failure", timeout=STREAM_TIMEOUT_MS)
    assert chat.page.evaluate("window.failure") is None
    final: dict[str, Any] = chat.page.evaluate("window.final")
    return final


def test_eventsource_snippet_survives_a_cut(
    proxied_chat: Chat, proxy: CuttableProxy, spool: Spool
) -> None:
    chat = proxied_chat
    _load(chat, proxy, "eventsource")
    with chat.page.expect_response("**/v1/generations") as created:
        chat.page.evaluate(
            """(prompt) => {
                window.seen = "";
                window.failure = null;
                ask(prompt, (t) => { window.seen = t; })
                  .then((r) => { window.final = r; }, (e) => { window.failure = e; });
            }""",
            PROMPT,
        )
    final = _cut_mid_answer(chat, proxy)
    record = spool.record(created.value.json()["id"])
    assert final["text"] == record["text"]
    assert final["finish_reason"] == "stop"


def test_fetch_offset_snippet_survives_a_cut(
    proxied_chat: Chat, proxy: CuttableProxy, spool: Spool
) -> None:
    chat = proxied_chat
    _load(chat, proxy, "fetch-offset")
    offsets: list[Request] = []
    chat.page.on("request", lambda r: offsets.append(r) if "offset=" in r.url else None)
    generation_id = chat.page.evaluate(
        """async (mock) => {
            const res = await fetch("/v1/generations", {
              method: "POST",
              headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], mock }),
            });
            const { id, stream_url } = await res.json();
            window.seen = "";
            window.failure = null;
            follow(stream_url, (t) => { window.seen = t; })
              .then((r) => { window.final = r; }, (e) => { window.failure = String(e); });
            return id;
        }""",
        MOCK,
    )
    final = _cut_mid_answer(chat, proxy)
    assert final["text"] == MOCK["text"] == spool.record(generation_id)["text"]
    assert final["done"]["finish_reason"] == "stop"
    resumed = [int(re.findall(r"offset=(\d+)", r.url)[0]) for r in offsets]
    assert resumed[0] == 0 and max(resumed) >= CUT_AFTER_CHARS
