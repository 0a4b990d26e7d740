"""The fake provider server itself: the parts the provider tests do not exercise."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import orjson
import pytest
import requests

from tests.fakeprovider import ROOT, FakeProvider, scenario
from tests.fakeprovider.scenarios import Defaults, FaultCounter, derived_text, resolve


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    server = FakeProvider(tokens=5)
    yield server
    server.stop()


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def test_non_streaming_openai_completion(fake: FakeProvider) -> None:
    body = {"model": "m1", "messages": user(scenario(
        text="hi there", tool_calls=[{"name": "f", "arguments": {"a": 1}}],
        usage={"input_tokens": 3, "output_tokens": 4}))}
    got = requests.post(f"{fake.openai_base_url}/chat/completions", json=body, timeout=10).json()
    assert got["object"] == "chat.completion" and got["model"] == "m1"
    choice = got["choices"][0]
    assert choice["message"]["content"] == "hi there"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f",
                                                              "arguments": '{"a":1}'}
    assert choice["finish_reason"] == "tool_calls"
    assert got["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_non_streaming_anthropic_message(fake: FakeProvider) -> None:
    body = {"model": "c1", "max_tokens": 5,
            "messages": user(scenario(text="yo", finish_reason="length"))}
    got = requests.post(f"{fake.url}/v1/messages", json=body, timeout=10).json()
    assert got["type"] == "message" and got["content"] == [{"type": "text", "text": "yo"}]
    assert got["stop_reason"] == "max_tokens"


def test_models_in_both_formats(fake: FakeProvider) -> None:
    openai_list = requests.get(f"{fake.url}/v1/models", timeout=10).json()
    assert openai_list["object"] == "list" and openai_list["data"][0]["object"] == "model"
    anthropic_list = requests.get(f"{fake.url}/v1/models", timeout=10,
                                  headers={"anthropic-version": "2023-06-01"}).json()
    assert anthropic_list["has_more"] is False and anthropic_list["data"][0]["type"] == "model"


def test_unknown_route_and_reset() -> None:
    server = FakeProvider()
    try:
        assert requests.get(f"{server.url}/nope", timeout=10).status_code == 404
        requests.post(f"{server.openai_base_url}/chat/completions", timeout=10,
                      json={"messages": user("x")})
        assert len(server.requests()) == 1
        server.reset()
        assert server.requests() == []
    finally:
        server.stop()


def test_default_answer_is_deterministic_and_sized() -> None:
    body = {"messages": user("same prompt")}
    one = resolve(body, Defaults(tokens=7), FaultCounter())
    two = resolve(body, Defaults(tokens=7), FaultCounter())
    assert one.chunks == two.chunks == derived_text("same prompt", 7) and len(one.chunks) == 7
    other = resolve({"messages": user("other")}, Defaults(tokens=7), FaultCounter())
    assert other.chunks != one.chunks


def test_fail_times_counts_per_key() -> None:
    counter = FaultCounter()
    spec = scenario(fault="500", fail_times=2, key="k")
    faults = [resolve({"messages": user(spec)}, Defaults(), counter).fault for _ in range(3)]
    assert faults == ["500", "500", None]
    other = resolve({"messages": user(scenario(fault="500", fail_times=2, key="j"))},
                    Defaults(), counter)
    assert other.fault == "500"


def test_in_process_helpers() -> None:
    # start_server needs a running gevent hub (a patched process); serve_in_thread brings its own.
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import json, urllib.request\n"
        "from tests.fakeprovider.server import start_server, serve_in_thread\n"
        "for start in (start_server, serve_in_thread):\n"
        "    server, port = start('127.0.0.1', 0, ttft_ms=0, tps=0, tokens=3)\n"
        "    url = f'http://127.0.0.1:{port}/v1/chat/completions'\n"
        "    req = urllib.request.Request(url, data=json.dumps({'messages': [\n"
        "        {'role': 'user', 'content': 'hi'}]}).encode(), method='POST')\n"
        "    got = json.load(urllib.request.urlopen(req, timeout=10))\n"
        "    print(len(got['choices'][0]['message']['content'].split()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          timeout=60, check=True)
    assert done.stdout.split() == [b"3", b"3"]


def test_streams_keep_the_connection_alive(fake: FakeProvider) -> None:
    # As the SDKs do: the next request reuses the connection some time after the
    # stream ended (here after a pause, so it is not already waiting when read).
    # Paced, so the stream waits between tokens while its disconnect watcher runs.
    body = {"model": "m1", "stream": True,
            "messages": user(scenario(text="one two three", ttft_ms=10, tps=200))}
    with requests.Session() as session:
        for _ in range(3):
            got = session.post(f"{fake.openai_base_url}/chat/completions", json=body, timeout=10)
            assert got.text.endswith("data: [DONE]\n\n")
            time.sleep(0.2)
    conns = {r["conn"] for r in fake.requests()[-3:]}
    assert len(conns) == 1


def test_a_paused_stream_ends_when_its_client_leaves(fake: FakeProvider) -> None:
    # Tokens 3 s apart: the stream is paused when the client hangs up, and must
    # end then (as a real server stops generating), not at the next token.
    body = orjson.dumps({"model": "m1", "stream": True,
                         "messages": user(scenario(text="a b c d", ttft_ms=0, tps=1 / 3))})
    with socket.create_connection(("127.0.0.1", fake.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                     b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))
        received = b""
        while b'"content":"a' not in received:
            received += sock.recv(65536)
    deadline = time.monotonic() + 5
    record = fake.requests()[-1]
    while record["finished_at"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
        record = fake.requests()[-1]
    assert record["client_disconnected"]
    assert record["finished_at"] - record["disconnected_at"] < 1.0
