"""Named providers at once: OpenAI + a local OpenAI-compatible server + an Anthropic-kind one.

Three loopback fake servers, each answering `whoami` scenarios with its own
name and the model it was asked for, behind one real web and worker: the
answers prove where each request went. Plus fallback by name before output,
the facade's `name/model` prefixes, `/v1/models`, batches and metrics labels.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api
from tests.fakeprovider import FakeProvider, matching, scenario
from tests.harness import Stack
from tests.sseclient import StreamResult

LOCAL_MODELS = ("llama-fake", "qwen-fake")
FLUSH_S = 0.2  # SPOOL_METRICS_FLUSH_S


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProvider]]:
    servers = {name: FakeProvider(name=name) for name in ("fake-a", "fake-b", "fake-c")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def napi(redis_server: Any, fakes: dict[str, FakeProvider]) -> Iterator[Api]:
    env = {
        # `openai` through the variables it always had, on fake A.
        "OPENAI_BASE_URL": fakes["fake-a"].openai_base_url, "OPENAI_API_KEY": "sk-a",
        # A local vLLM-like server (no key) and a second Anthropic-kind account.
        "SPOOL_PROVIDERS": "local,claude-eu,listed",
        "SPOOL_PROVIDER_LOCAL_BASE_URL": fakes["fake-b"].openai_base_url,
        "SPOOL_PROVIDER_LOCAL_MODELS": ",".join(LOCAL_MODELS),
        "SPOOL_PROVIDER_LOCAL_RETRY_ATTEMPTS": "1",  # its own policy: straight to the fallback
        "SPOOL_PROVIDER_CLAUDE_EU_KIND": "anthropic",
        "SPOOL_PROVIDER_CLAUDE_EU_BASE_URL": fakes["fake-c"].anthropic_base_url,
        "SPOOL_PROVIDER_CLAUDE_EU_API_KEY": "ak-c",
        "SPOOL_PROVIDER_CLAUDE_EU_MODEL": "claude-fake-eu",
        # Its models are asked for when the web starts.
        "SPOOL_PROVIDER_LISTED_BASE_URL": fakes["fake-b"].openai_base_url,
        "SPOOL_PROVIDER_LISTED_MODEL": "gpt-fake", "SPOOL_PROVIDER_LISTED_MODELS": "auto",
        "SPOOL_DEFAULT_PROVIDER": "local",
        "SPOOL_FALLBACK_PROVIDERS": "openai",
        "SPOOL_RETRY_ATTEMPTS": "3", "SPOOL_RETRY_BASE_S": "0.05",
        "SPOOL_FIRST_TOKEN_TIMEOUT_S": "10", "SPOOL_IDLE_TIMEOUT_S": "10",
        "SPOOL_METRICS_FLUSH_S": str(FLUSH_S),
    }
    stack = Stack(redis_server.url, env)
    try:
        stack.start_web()
        stack.start_worker()
    except BaseException:
        print(stack.logs())
        stack.close()
        raise
    client = Api(stack)
    yield client
    client.session.close()
    stack.close()


def whoami(key: str, **spec: Any) -> list[dict[str, str]]:
    return [{"role": "user", "content": scenario(whoami=True, key=key, **spec)}]


def deltas(result: StreamResult) -> str:
    return "".join(e.data["text"] for e in result.events if e.event == "delta")


def test_three_providers_at_once_each_reach_their_own_server(
        napi: Api, fakes: dict[str, FakeProvider]) -> None:
    key = uuid.uuid4().hex
    asked = {"openai": None, "local": "qwen-fake", "claude-eu": None, None: None}
    created = {}
    for provider, model in asked.items():  # all queued before any is read: they run together
        body: dict[str, Any] = {"messages": whoami(key), "max_tokens": 32}
        if provider is not None:
            body["provider"] = provider
        if model is not None:
            body["model"] = model
        resp = napi.post("/v1/generations", body)
        assert resp.status_code == 202, resp.text
        created[provider] = resp.json()
    texts = {provider: deltas(napi.stream(c)) for provider, c in created.items()}
    assert texts == {
        "openai": "fake-a answering for model gpt-4o-mini",
        "local": "fake-b answering for model qwen-fake",
        "claude-eu": "fake-c answering for model claude-fake-eu",
        None: "fake-b answering for model llama-fake",  # SPOOL_DEFAULT_PROVIDER=local
    }
    for provider, c in created.items():
        record = napi.generation(c["id"])
        assert record["status"] == "completed"
        assert record["provider"] == (provider or "local")
    # Each server saw only its own provider's requests, with that provider's key.
    [a] = matching(fakes["fake-a"].requests(), key)
    assert a["headers"]["authorization"] == "Bearer sk-a"
    b = matching(fakes["fake-b"].requests(), key)
    assert len(b) == 2 and {r["body"]["model"] for r in b} == set(LOCAL_MODELS)
    assert all(r["headers"]["authorization"] == "Bearer spool-no-key" for r in b)
    assert all(r["body"]["max_tokens"] == 32 for r in b)  # compatible servers get max_tokens
    [c_record] = matching(fakes["fake-c"].requests(), key)
    assert c_record["path"] == "/v1/messages"
    assert c_record["headers"]["authorization"] == "Bearer ak-c"


def ttft_counts(napi: Api) -> dict[str, float]:
    """spool_ttft_seconds_count by provider label."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(napi.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "spool_ttft_seconds_count":
                counts[sample.labels["provider"]] = sample.value
    return counts


def settled_ttft_counts(napi: Api) -> dict[str, float]:
    """The counts once earlier generations' metrics have all been flushed (two flushes agree)."""
    previous = ttft_counts(napi)
    while True:
        time.sleep(3 * FLUSH_S)
        current = ttft_counts(napi)
        if current == previous:
            return current
        previous = current


def test_fallback_from_one_named_provider_to_another_before_output(
        napi: Api, fakes: dict[str, FakeProvider]) -> None:
    key = uuid.uuid4().hex
    before = settled_ttft_counts(napi)
    resp = napi.post("/v1/generations", {"provider": "local", "max_tokens": 32,
                                         "messages": whoami(key, fault="503", fault_on="fake-b")})
    assert resp.status_code == 202, resp.text
    result = napi.stream(resp.json())
    assert result.events[-1].event == "done"
    assert deltas(result) == "fake-a answering for model gpt-4o-mini"
    [notice] = [e.data["message"] for e in result.events if e.event == "notice"]
    assert "local answered HTTP 503" in notice and "falling back to openai" in notice
    # SPOOL_PROVIDER_LOCAL_RETRY_ATTEMPTS=1: one try on local, none repeated
    assert len(matching(fakes["fake-b"].requests(), key)) == 1
    assert len(matching(fakes["fake-a"].requests(), key)) == 1
    record = napi.generation(resp.json()["id"])
    assert (record["provider"], record["model"]) == ("openai", "gpt-4o-mini")
    # Metrics name who answered: the first token came from openai, not local.
    deadline = time.monotonic() + 30
    while (after := ttft_counts(napi)).get("openai", 0) == before.get("openai", 0):
        assert time.monotonic() < deadline, "no ttft observation for openai"
        time.sleep(0.3)
    assert after["openai"] == before.get("openai", 0) + 1
    assert after.get("local", 0) == before.get("local", 0)


def test_facade_prefixes_choose_custom_names(napi: Api) -> None:
    client = openai.OpenAI(base_url=napi.url("/v1"), api_key="unused", max_retries=0)
    key = uuid.uuid4().hex
    content = scenario(whoami=True, key=key)
    messages: Any = [{"role": "user", "content": content}]
    answer = client.chat.completions.create(model="local/qwen-fake", messages=messages)
    assert answer.choices[0].message.content == "fake-b answering for model qwen-fake"
    assert answer.model == "local/qwen-fake"
    stream = client.chat.completions.create(model="claude-eu/", messages=messages, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "fake-c answering for model claude-fake-eu"
    plain = client.chat.completions.create(model="llama-fake", messages=messages)
    assert plain.choices[0].message.content == "fake-b answering for model llama-fake"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="locl/llama-fake", messages=messages)
    assert caught.value.code == "model_not_found" and "local/" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=messages)
    assert caught.value.code == "model_not_found" and "not configured" in caught.value.message


def test_models_list_reflects_the_configuration(napi: Api) -> None:
    client = openai.OpenAI(base_url=napi.url("/v1"), api_key="unused", max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert ids == ["mock/mock-1", "openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-4.1",
                   "openai/gpt-4.1-mini", "local/llama-fake", "local/qwen-fake",
                   "claude-eu/claude-fake-eu",
                   "listed/gpt-fake", "listed/gpt-fake-mini"]  # asked at startup (auto)
    assert client.models.retrieve("local/qwen-fake").owned_by == "local"


def test_requests_name_providers_never_endpoints(napi: Api) -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    for body, fragment in [({**base, "provider": "nope"}, "unknown provider"),
                           ({**base, "provider": "gemini"}, "not configured"),
                           ({**base, "provider": "Local"}, "provider")]:
        resp = napi.post("/v1/generations", body)
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["param"] == "provider" and fragment in error["message"]
    resp = napi.post("/v1/generations", {**base, "provider": "local",
                                         "base_url": "http://evil.example/v1"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "base_url"


def test_batch_rows_route_by_name(napi: Api) -> None:
    key = uuid.uuid4().hex
    rows = [{"custom_id": provider, "provider": provider, "messages": whoami(key),
             "max_tokens": 16} for provider in ("local", "claude-eu", "openai")]
    resp = napi.post("/v1/batches", {"requests": rows})
    assert resp.status_code == 202, resp.text
    batch_id = resp.json()["id"]
    deadline = time.monotonic() + 60
    while napi.get(f"/v1/batches/{batch_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline, "batch did not finish"
        time.sleep(0.2)
    lines = napi.get(f"/v1/batches/{batch_id}/results").text.splitlines()
    texts = {row["custom_id"]: row["text"] for row in map(orjson.loads, lines)}
    assert texts == {"local": "fake-b answering for model llama-fake",
                     "claude-eu": "fake-c answering for model claude-fake-eu",
                     "openai": "fake-a answering for model gpt-4o-mini"}


def test_metrics_are_labelled_with_provider_names(napi: Api) -> None:
    key = uuid.uuid4().hex
    resp = napi.post("/v1/generations", {"provider": "claude-eu", "messages": whoami(key)})
    assert resp.status_code == 202
    napi.stream(resp.json())
    deadline = time.monotonic() + 30  # each process adds its metrics every few seconds
    while 'provider="claude-eu"' not in napi.get("/metrics").text:
        assert time.monotonic() < deadline, "no metrics labelled claude-eu"
        time.sleep(0.5)


def test_ai_sdk_chat_routes_by_name(napi: Api) -> None:
    content = scenario(whoami=True, key=uuid.uuid4().hex)
    message = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": content}]}
    body = {"id": f"chat-{uuid.uuid4().hex}", "provider": "claude-eu",
            "trigger": "submit-message", "messages": [message]}
    resp = napi.post("/v1/ai-sdk/chat", body)
    assert resp.status_code == 200, resp.text
    parts = [orjson.loads(line[len("data: "):]) for line in resp.text.splitlines()
             if line.startswith("data: {")]
    text = "".join(p["delta"] for p in parts if p.get("type") == "text-delta")
    assert text == "fake-c answering for model claude-fake-eu"
