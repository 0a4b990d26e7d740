"""A page bundling the `ai` package's chat client (AbstractChat + DefaultChatTransport,
what useChat runs) in real Chromium, on another origin than Spool (CORS), with an API
key: it sends a message, is reloaded mid-answer, and resumes the same answer.

The page is served by a small HTTP server of its own on another loopback port, as a
Next.js app would be served apart from Spool (Chromium refuses a public origin's
requests to loopback, so a made-up origin would not do).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.support import ARTIFACTS
from tests.harness import Stack, free_port
from tests.nodejs import bundle

pytestmark = pytest.mark.e2e

KEY = "sk-aisdk-browser-" + secrets.token_hex(8)
ANSWER = " ".join(f"token{i}" for i in range(50)) + " — the end 🙂"
MOCK = {"text": ANSWER, "tokens_per_second": 15, "ttft_ms": 50}  # ~7 s: outlasts a slow reload
PAGE = """<!doctype html>
<meta charset="utf-8"><title>useChat on Spool</title>
<ul id="messages"></ul>
<p>status: <span id="status"></span> <span id="error"></span></p>
<form id="composer"><input id="input" value="Tell me something"><button>Send</button></form>
<script>window.SPOOL_CHAT = {config};</script>
<script src="/chat.js"></script>
"""


@pytest.fixture
def app_port() -> int:
    return free_port()


@pytest.fixture
def spool_stack(make_stack: Any, app_port: int) -> Stack:
    # The app's origin is not Spool's: every request is cross-origin (CORS, preflights).
    return make_stack(env={
        "SPOOL_API_KEYS": f"acme:{KEY}",
        "SPOOL_SECRET_KEY": secrets.token_hex(32),
        "SPOOL_CORS_ORIGINS": f"http://localhost:{app_port}",
    })


@pytest.fixture
def app(spool_stack: Stack, app_port: int, tmp_path: Path) -> Iterator[str]:
    """The app's page and the bundled client, served on `app_port`."""
    script = bundle("page/chat.js", tmp_path).read_bytes()
    config = {"api": f"{spool_stack.base_url}/v1/ai-sdk/chat", "key": KEY,
              "chatId": "chat-browser", "body": {"mock": MOCK}}
    html = PAGE.replace("{config}", json.dumps(config)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = (script, "text/javascript") if self.path == "/chat.js" \
                else (html, "text/html; charset=utf-8")
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", app_port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{app_port}/"
    server.shutdown()
    server.server_close()


def test_reload_mid_answer_resumes_the_same_answer(browser: Any, spool_stack: Stack, app: str,
                                                   request: pytest.FixtureRequest) -> None:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(app)
        expect(page.locator("#status")).to_have_text("ready")  # resume on load: 204
        page.locator("#composer button").click()
        assistant = page.locator('li[data-role="assistant"]')
        expect(assistant).to_contain_text("token3")
        before = assistant.inner_text()
        gen_id = assistant.get_attribute("data-id")
        assert gen_id and before and len(before) < len(ANSWER)

        page.reload()  # mid-answer: the POST's connection goes with the page
        # resumeStream() on load replays the answer from its start, then follows it live.
        expect(page.locator("#status")).to_have_text("streaming")
        expect(page.locator("#status")).to_have_text("ready", timeout=30_000)
        expect(assistant).to_have_count(1)
        expect(assistant).to_have_text(ANSWER)
        assert assistant.get_attribute("data-id") == gen_id
        expect(page.locator('li[data-role="user"]')).to_have_text("Tell me something")
        expect(page.locator("#error")).to_have_text("")

        found = requests.get(f"{spool_stack.base_url}/v1/generations/{gen_id}", timeout=10,
                             headers={"Authorization": f"Bearer {KEY}"}).json()
        assert found["status"] == "completed" and found["text"] == ANSWER
        assert not errors, errors
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"failure-{request.node.name}.png"))
        raise
    finally:
        context.close()
