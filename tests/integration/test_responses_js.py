"""The Vercel AI SDK's default OpenAI provider (`@ai-sdk/openai`: the Responses API)
against Spool: `streamText` with a tool the SDK executes, over two steps — the second
sends the call back as `function_call` + `function_call_output`, and the first step's
text as an `item_reference` (the provider's default, `store` being on)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.harness import Stack
from tests.nodejs import run_script

KEY = "sk-js-" + secrets.token_hex(8)
FAST = {"ttft_ms": 10, "tokens_per_second": 0}


@pytest.fixture(scope="module")
def stack(redis_server: Any) -> Iterator[Stack]:
    shared = Stack(redis_server.url, {"SPOOL_API_KEYS": f"js:{KEY}",
                                      "SPOOL_SECRET_KEY": secrets.token_hex(32)})
    shared.start_web()
    shared.start_worker()
    yield shared
    shared.close()


def test_stream_text_with_a_tool_over_two_steps(stack: Stack) -> None:
    out = run_script("responses.mjs", {
        "baseURL": stack.url("/v1"), "apiKey": KEY, "model": "mock/mock-1",
        "prompt": "Weather in Paris?",
        "mocks": [{**FAST, "text": "Let me check.", "tool_calls": [
                      {"name": "get_weather", "arguments": {"city": "Paris"}}]},
                  {**FAST, "text": "It is 18 °C in Paris."}],
    }, "@ai-sdk/openai")
    first, second = out["steps"]
    assert first["finishReason"] == "tool-calls" and first["text"] == "Let me check."
    [call] = first["toolCalls"]
    assert call["toolName"] == "get_weather" and call["input"] == {"city": "Paris"}
    assert first["toolResults"][0]["output"] == {"city": "Paris", "celsius": 18}
    assert second["finishReason"] == "stop" and second["text"] == "It is 18 °C in Paris."
    assert out["text"] == "Let me check.It is 18 °C in Paris."
    # What the SDK sent back: the earlier text by reference, the call and its output.
    items = out["requests"][1]["input"]
    kinds = [item.get("type", "message") for item in items]
    assert kinds == ["message", "item_reference", "function_call", "function_call_output"]
    assert items[2]["call_id"] == items[3]["call_id"] == call["toolCallId"]
    first_id, second_id = out["responseIds"]
    assert items[1]["id"].startswith("msg_" + first_id.removeprefix("gen_"))
    auth = {"Authorization": f"Bearer {KEY}"}
    answer = requests.get(stack.url(f"/v1/responses/{second_id}"), headers=auth,
                          timeout=10).json()
    assert answer["status"] == "completed"
    assert answer["output"][0]["content"][0]["text"] == "It is 18 °C in Paris."
    assert out["usage"]["totalTokens"] == (out["usage"]["inputTokens"]
                                           + out["usage"]["outputTokens"]) > 0
