"""Chat Completions clients count as readers under the server's `SPOOL_ABANDON_AFTER_S`.

A deployment that sets a default abandon window must not cancel an answer an
OpenAI SDK client is still reading (streamed) or waiting for (not streamed);
and it must still abandon one whose client went away.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests

from tests.harness import Stack, running_stack, wait_until

KEY = "sk-abandon-" + secrets.token_hex(8)
ABANDON_S = 1
USER = [{"role": "user", "content": "hello"}]
# 60 words, ~3 s at 20 tokens/s: past the 1 s window, so only a counted reader keeps it going.
TEXT = "Watched answers must finish. " * 15 + "Every token."
SLOW = {"mock": {"text": TEXT, "tokens_per_second": 20, "ttft_ms": 0}}


@pytest.fixture(scope="module")
def stack(redis_server: Any) -> Iterator[Stack]:
    with running_stack(redis_server.url, {
            "SPOOL_API_KEYS": f"acme:{KEY}",
            "SPOOL_SECRET_KEY": secrets.token_hex(32),
            "SPOOL_ABANDON_AFTER_S": str(ABANDON_S),
            "SPOOL_CHAT_TIMEOUT_S": "30",
    }) as shared:
        yield shared


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.url("/v1"), api_key=KEY, max_retries=0, timeout=30)


def record(stack: Stack, gen_id: str) -> dict[str, Any]:
    resp = requests.get(stack.url(f"/v1/generations/{gen_id}"),
                        headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def test_a_streaming_sdk_client_keeps_its_answer_alive(client: openai.OpenAI,
                                                       stack: Stack) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock/mock-1", messages=USER, stream=True, extra_body=SLOW)
    gen_id = raw.headers["Spool-Generation-Id"]
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"
    found = record(stack, gen_id)
    assert found["status"] == "completed" and found["finish_reason"] == "stop"


def test_a_waiting_sdk_client_keeps_its_answer_alive(client: openai.OpenAI,
                                                     stack: Stack) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock/mock-1", messages=USER, extra_body=SLOW)
    result = raw.parse()
    assert result.choices[0].message.content == TEXT
    assert result.choices[0].finish_reason == "stop"
    assert record(stack, raw.headers["Spool-Generation-Id"])["status"] == "completed"


def test_an_sdk_client_that_leaves_is_abandoned(stack: Stack) -> None:
    body = {"model": "mock/mock-1", "messages": USER, "stream": True,
            "mock": {"text": TEXT * 4, "tokens_per_second": 20, "ttft_ms": 0}}
    resp = requests.post(stack.url("/v1/chat/completions"), json=body, stream=True,
                         headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert resp.status_code == 200
    gen_id = resp.headers["Spool-Generation-Id"]
    next(resp.iter_content(chunk_size=None))
    resp.close()
    found = wait_until(lambda: (r := record(stack, gen_id))["status"] == "cancelled" and r,
                       timeout=30, what="the unread answer to be abandoned")
    assert found["finish_reason"] == "abandoned"


def test_a_client_waiting_on_responses_keeps_its_answer_alive(client: openai.OpenAI,
                                                              stack: Stack) -> None:
    raw = client.responses.with_raw_response.create(model="mock/mock-1", input="hello",
                                                    extra_body=SLOW)
    result = raw.parse()
    assert result.status == "completed"
    assert result.output_text == TEXT


def test_a_client_waiting_on_native_chat_keeps_its_answer_alive(stack: Stack) -> None:
    resp = requests.post(stack.url("/v1/chat"), headers={"Authorization": f"Bearer {KEY}"},
                         json={"messages": USER, **SLOW}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "completed" and resp.json()["text"] == TEXT
