"""Each adapter through its real SDK against the loopback fake provider (no gevent, no Redis)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from spool.settings import Settings
from tests.fakeprovider import FakeProvider, matching, scenario
from worker.providers import anthropic as anthropic_provider
from worker.providers import openai as openai_provider
from worker.providers.base import Finish, Piece, ProviderError, TextDelta, ToolCallDelta, Usage

PROVIDERS = {"openai": openai_provider, "anthropic": anthropic_provider}
TEXT = "Hello, 世界! 🙂 e\u0301 line\nbreak — \"quoted\" done."
DISCONNECT_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    server = FakeProvider()
    yield server
    server.stop()


@pytest.fixture(params=sorted(PROVIDERS))
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_stream(fake: FakeProvider, vendor: str, spec: dict[str, Any] | None = None,
                **fields: Any) -> Any:
    settings = Settings(openai_base_url=fake.openai_base_url,
                        anthropic_base_url=fake.anthropic_base_url,
                        openai_api_key="sk-test-key", anthropic_api_key="ak-test-key")
    content = scenario(**spec) if spec is not None else "Tell me something."
    request = {"messages": [{"role": "user", "content": content}], "max_tokens": 64, **fields}
    return PROVIDERS[vendor].build(settings).open(request)


def collect(stream: Any) -> list[Piece]:
    return list(stream)


def text_of(pieces: list[Piece]) -> str:
    return "".join(p.text for p in pieces if isinstance(p, TextDelta))


def test_exact_text_usage_and_finish(fake: FakeProvider, vendor: str) -> None:
    pieces = collect(open_stream(fake, vendor, {"text": TEXT, "chunk_chars": 3,
                                                "usage": {"input_tokens": 11,
                                                          "output_tokens": 22}}))
    assert text_of(pieces) == TEXT
    assert len([p for p in pieces if isinstance(p, TextDelta)]) == -(-len(TEXT) // 3)
    usages = [p for p in pieces if isinstance(p, Usage)]
    # Anthropic's message_delta usage is cumulative: the last one is the total, not a sum.
    assert usages[-1] == Usage(11, 22)
    assert pieces[-1] == Finish("stop")
    assert [p for p in pieces if isinstance(p, Finish)] == [Finish("stop")]


def test_tool_calls_in_fragments(fake: FakeProvider, vendor: str) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "units": "metric"}},
             {"name": "now", "arguments": {}}]
    pieces = collect(open_stream(fake, vendor, {"text": "Let me check.", "tool_calls": calls}))
    fragments = [p for p in pieces if isinstance(p, ToolCallDelta)]
    first = [f for f in fragments if f.index == 0]
    assert first[0].name == "get_weather" and first[0].id
    assert len(first) > 3  # the arguments really arrived in several pieces
    assert "".join(f.arguments for f in first) == '{"city":"Paris","units":"metric"}'
    second = [f for f in fragments if f.index == 1]
    assert second[0].name == "now" and "".join(f.arguments for f in second) == "{}"
    assert text_of(pieces) == "Let me check."
    assert pieces[-1] == Finish("tool_calls")


@pytest.mark.parametrize("reason", ["length", "content_filter", "stop"])
def test_finish_reasons(fake: FakeProvider, vendor: str, reason: str) -> None:
    pieces = collect(open_stream(fake, vendor, {"text": "abc", "finish_reason": reason}))
    assert pieces[-1] == Finish(reason)


def test_request_on_the_wire(fake: FakeProvider, vendor: str) -> None:
    marker = uuid.uuid4().hex
    collect(open_stream(fake, vendor, {"text": "ok", "key": marker}, temperature=0.5,
                        system="Be brief."))
    [record] = matching(fake.requests(), marker)
    body, headers = record["body"], record["headers"]
    assert body["stream"] is True
    if vendor == "openai":
        assert record["path"] == "/v1/chat/completions"
        assert headers["authorization"] == "Bearer sk-test-key"
        assert body["temperature"] == 0.5 and body["max_tokens"] == 64
        assert body["stream_options"] == {"include_usage": True}
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    else:
        assert record["path"] == "/v1/messages"
        assert headers["authorization"] == "Bearer ak-test-key"
        assert headers["anthropic-version"]
        assert "temperature" not in body
        assert body["system"] == "Be brief." and body["max_tokens"] == 64
    assert headers["x-stainless-retry-count"] == "0"
    assert headers["content-type"] == "application/json"  # the SDK's header on our JSON body


def test_in_band_error_after_output(fake: FakeProvider, vendor: str) -> None:
    pieces: list[Piece] = []
    with pytest.raises(ProviderError) as caught:
        for piece in open_stream(fake, vendor, {"text": "abcdefghijkl", "chunk_chars": 2,
                                                "fault": "inband_error",
                                                "fault_after_tokens": 2}):
            pieces.append(piece)
    assert text_of(pieces) == "abcd"
    assert caught.value.type == "provider_error" and caught.value.retryable


def test_truncated_stream_ends_without_finish(fake: FakeProvider, vendor: str) -> None:
    pieces = collect(open_stream(fake, vendor, {"text": "abcdefgh", "chunk_chars": 2,
                                                "fault": "truncate", "fault_after_tokens": 3}))
    assert text_of(pieces) == "abcdef"
    assert not any(isinstance(p, Finish) for p in pieces)


@pytest.mark.parametrize("fault", ["drop", "reset"])
def test_dropped_connection_after_output(fake: FakeProvider, vendor: str, fault: str) -> None:
    pieces: list[Piece] = []
    with pytest.raises(ProviderError) as caught:
        for piece in open_stream(fake, vendor, {"text": "abcdefgh", "chunk_chars": 2,
                                                "fault": fault, "fault_after_tokens": 2,
                                                "ttft_ms": 50, "tps": 20}):
            pieces.append(piece)
    assert text_of(pieces) in ("", "ab", "abcd")  # a reset may discard unread bytes
    if fault == "drop":
        assert text_of(pieces) == "abcd"
    assert caught.value.retryable and "connection" in caught.value.message
    assert not any(isinstance(p, Finish) for p in pieces)


@pytest.mark.parametrize(("fault", "api_type", "retryable"), [
    ("429", "rate_limited", True), ("500", "provider_error", True),
    ("529", "provider_error", True), ("400", "invalid_request", False),
    ("401", "provider_error", False), ("404", "invalid_request", False),
])
def test_http_errors_before_the_stream(fake: FakeProvider, vendor: str, fault: str,
                                       api_type: str, retryable: bool) -> None:
    with pytest.raises(ProviderError) as caught:
        open_stream(fake, vendor, {"fault": fault, "retry_after_s": 0.25})
    error = caught.value
    assert (error.type, error.retryable, error.status) == (api_type, retryable, int(fault))
    assert error.retry_after_s == (0.25 if retryable else None)
    assert "(fake)" in error.message  # the vendor's own error message is kept


def test_close_disconnects_upstream(fake: FakeProvider, vendor: str) -> None:
    marker = uuid.uuid4().hex
    stream = open_stream(fake, vendor, {"key": marker, "tokens": 500, "tps": 20, "ttft_ms": 0})
    pieces = iter(stream)
    while not isinstance(next(pieces), TextDelta):
        pass
    closed_at = time.time()
    stream.close()
    stream.close()  # idempotent
    # `pieces` is still alive and suspended: only close() itself can have hung up.
    deadline = time.monotonic() + 5
    while True:
        [record] = matching(fake.requests(), marker)
        if record["client_disconnected"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert record["client_disconnected"] is True
    assert record["disconnected_at"] - closed_at < DISCONNECT_WITHIN_S
    assert list(pieces) == []


def test_connection_refused_is_retryable(vendor: str) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(openai_base_url=f"http://127.0.0.1:{port}/v1",
                        anthropic_base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderError) as caught:
        PROVIDERS[vendor].build(settings).open(
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
    assert caught.value.retryable and caught.value.type == "provider_error"


def test_models_listing(fake: FakeProvider, vendor: str) -> None:
    settings = Settings(openai_base_url=fake.openai_base_url,
                        anthropic_base_url=fake.anthropic_base_url)
    models = PROVIDERS[vendor].build(settings).models()
    assert models == (["gpt-fake-mini", "gpt-fake"] if vendor == "openai"
                      else ["claude-fake-haiku"])


def test_a_finished_stream_leaves_its_connection_for_the_next(fake: FakeProvider,
                                                              vendor: str) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    assert text_of(collect(open_stream(fake, vendor, {"text": "one", "key": first}))) == "one"
    assert text_of(collect(open_stream(fake, vendor, {"text": "two", "key": second}))) == "two"
    [one] = matching(fake.requests(), first)
    [two] = matching(fake.requests(), second)
    assert one["conn"] == two["conn"]  # read to the end, so the pool kept the connection
    assert not one["client_disconnected"]


def test_the_body_is_read_below_httpx_with_the_same_text(fake: FakeProvider, vendor: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean body read (worker.providers._rawbody) serves these real SDK
    responses, and gives what httpx's own iter_bytes path gives."""
    from worker.providers import _rawbody, _sse

    served: list[bool] = []
    real = _sse.raw_body

    def watched(response: Any) -> Any:
        chunks = real(response)
        served.append(chunks is not None)
        return chunks

    decoded: list[bytes] = []

    class WatchedDecoder(_rawbody.ChunkDecoder):
        def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
            payload, rest = super().feed(data)
            decoded.append(payload)
            return payload, rest

    spec = {"text": TEXT, "chunk_chars": 2}
    monkeypatch.setattr(_sse, "raw_body", watched)
    monkeypatch.setattr(_rawbody, "ChunkDecoder", WatchedDecoder)
    lean = collect(open_stream(fake, vendor, spec))
    monkeypatch.setattr(_sse, "raw_body", lambda response: None)  # httpx's path
    plain = collect(open_stream(fake, vendor, spec))
    assert served == [True]
    # The chunked framing was decoded below h11 too, to the body's last event.
    assert decoded and b"".join(decoded).endswith(b"\n\n")
    assert text_of(lean) == text_of(plain) == TEXT
    assert [type(p) for p in lean] == [type(p) for p in plain]


def test_more_concurrent_streams_than_the_sdk_default_keep_their_connections(
        fake: FakeProvider, vendor: str) -> None:
    """More concurrent streams than the SDKs' default pool keeps (100): a second
    wave of as many opens no new connection."""
    streams_at_once = 120

    def wave() -> set[int]:
        keys = [uuid.uuid4().hex for _ in range(streams_at_once)]
        streams = [open_stream(fake, vendor, {"text": "ok", "key": key}) for key in keys]
        for stream in streams:  # all were open at once; now read each to its end
            assert text_of(collect(stream)) == "ok"
        records = fake.requests()
        return {matching(records, key)[0]["conn"] for key in keys}

    first = wave()
    assert len(first) == streams_at_once
    assert wave() == first  # every connection went back and was reused


def shelf_of(fake: FakeProvider, vendor: str) -> Any:
    settings = Settings(openai_base_url=fake.openai_base_url,
                        anthropic_base_url=fake.anthropic_base_url,
                        openai_api_key="sk-test-key", anthropic_api_key="ak-test-key")
    return PROVIDERS[vendor].build(settings)._shelf


def test_every_way_a_stream_ends_gives_its_client_back(fake: FakeProvider, vendor: str) -> None:
    """Read to the end, closed early, or refused with an HTTP error: the client
    goes back to the shelf once, and the next stream takes it instead of a new one."""
    shelf = shelf_of(fake, vendor)
    collect(open_stream(fake, vendor, {"text": "ok"}))
    idle, made = shelf.idle, shelf.made
    assert idle >= 1

    stream = open_stream(fake, vendor, {"tokens": 500, "tps": 20})
    assert shelf.idle == idle - 1  # lent while the stream is open
    stream.close()
    stream.close()
    assert list(stream) == []
    assert shelf.idle == idle  # given back exactly once

    with pytest.raises(ProviderError):
        open_stream(fake, vendor, {"fault": "500"})
    with pytest.raises(ProviderError):
        collect(open_stream(fake, vendor, {"text": "abcdefgh", "chunk_chars": 2,
                                           "fault": "drop", "fault_after_tokens": 2}))
    assert (shelf.idle, shelf.made) == (idle, made)
