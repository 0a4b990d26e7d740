"""Chromium's own EventSource on a `?offset=` URL, cut mid-answer.

EventSource reconnects to the URL it was opened with (offset included) and
adds `Last-Event-ID`. The header must win over the offset (else the
reconnect is a 400, which EventSource treats as fatal and the text stops
short), and once the terminal event was seen the reconnect gets 204, which
closes the EventSource for good.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from spool.utf16 import utf16_len
from tests.e2e.proxy import CuttableProxy
from tests.e2e.support import Spool
from tests.harness import wait_until

pytestmark = pytest.mark.e2e

ANSWER = "".join(f"Piece {n} of an answer with 東京 and 🚀 in it. " for n in range(40))
KEPT = "Piece 0 of"  # what a fetch-based client had before handing over to EventSource

LISTEN = """url => {
  window.__got = {texts: [], ids: [], names: [], errors: 0, opens: 0};
  const es = new EventSource(url);
  window.__es = es;
  es.onopen = () => { window.__got.opens += 1; };
  es.onerror = () => { window.__got.errors += 1; };
  // ("error" is also EventSource's own connection-error event: not listened to here.)
  for (const name of ["status", "delta", "done", "cancelled"]) {
    es.addEventListener(name, e => {
      window.__got.names.push(name);
      window.__got.ids.push(e.lastEventId);
      if (name === "delta") window.__got.texts.push(JSON.parse(e.data).text);
    });
  }
}"""


def test_eventsource_reconnect_with_offset_url(browser: Any, spool: Spool,
                                               proxy: CuttableProxy) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}],
            "mock": {"text": ANSWER, "tokens_per_second": 60, "ttft_ms": 20}}
    created = requests.post(f"{spool.url}/v1/generations", json=body, timeout=30).json()
    wait_until(lambda: len(spool.record(created["id"])["text"]) >= len(KEPT), 30, 0.05,
               "the first text")
    context = browser.new_context()
    page = context.new_page()
    seen: list[tuple[int, str | None]] = []
    page.on("response", lambda r: seen.append((r.status, r.request.header_value(
        "last-event-id"))) if "/events" in r.url else None)
    try:
        page.goto(proxy.url + "/healthz")  # same origin as the stream, no page script
        url = f"{proxy.url}{created['stream_url']}&offset={utf16_len(KEPT)}"
        page.evaluate(LISTEN, url)
        page.wait_for_function("window.__got.texts.length >= 3", timeout=30_000)
        assert proxy.cut() >= 1  # the line drops; EventSource reconnects by itself
        page.wait_for_function("window.__got.names.includes('done')", timeout=60_000)
        # After `done` the server ends the response; the reconnect gets 204 and
        # EventSource closes for good (readyState 2).
        page.wait_for_function("window.__es.readyState === 2", timeout=30_000)
        got = page.evaluate("window.__got")
        time.sleep(0.5)
    finally:
        context.close()
    assert KEPT + "".join(got["texts"]) == ANSWER
    ids = [int(i) for i in got["ids"]]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # nothing doubled or skipped
    statuses = [status for status, _ in seen]
    assert 400 not in statuses, seen
    resumed = [status for status, header in seen if header]
    assert resumed and resumed[-1] == 204, seen  # the header came with the original URL
    assert 200 in resumed, seen  # and mid-answer the stream went on after the cut
