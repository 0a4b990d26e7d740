"""Every status in API.md's error table answers with the error body, never a 5xx
for bad input. (Rate limits, 429, are covered with the limits themselves.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.conftest import Api, StackFactory
from tests.harness import RedisServer, Stack, wait_until

KEYS = "acme:key-acme-0123456789,globex:key-globex-0123456789"
SECRET = "s3cret-" * 8
MESSAGES = [{"role": "user", "content": "hi"}]


def assert_error(resp: requests.Response, status: int, type_: str,
                 param: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body["error"]) == {"type", "message", "param"}
    assert body["error"]["type"] == type_ and body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    return body


@pytest.mark.parametrize(("data", "param"), [
    (b"{", None),
    (b'{"messages": NaN}', None),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": Infinity}', None),
    (b"\xff\xfe{}", None),
    (b"[" * 5000 + b"]" * 5000, None),
    (b"[]", None),
    (b"", None),
    (b'{"messages": "hi"}', "messages"),
    (b'{"messages": [{"role": "user", "content": "x"}], "provider": "cohere"}', "provider"),
    (b'{"messages": [{"role": "user", "content": "x"}], "provider": "openai"}', "provider"),
])
def test_400_invalid_request(api: Api, data: bytes, param: str | None) -> None:
    resp = api.session.post(api.url("/v1/generations"), data=data,
                            headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "invalid_request", param)


@pytest.mark.parametrize(("header", "query"), [
    ({"Last-Event-ID": "abc"}, ""), ({"Last-Event-ID": "-1"}, ""),
    ({"Last-Event-ID": "１".encode()}, ""), ({"Last-Event-ID": "1e3"}, ""),
    ({"Last-Event-ID": "9" * 30}, ""), ({}, "&after=x"), ({}, "&after=-5"),
    ({}, "&offset=1.5"), ({}, "&offset=99999999"), ({}, "&offset=1&after=1"),
])
def test_400_bad_resume_points(api: Api, header: dict[str, Any], query: str) -> None:
    created = api.create("abc")
    resp = api.get(created["stream_url"] + query, headers=header)
    assert_error(resp, 400, "invalid_request")


def test_404_unknown_ids_and_routes(api: Api) -> None:
    for path in ["/v1/generations/gen_" + "A" * 24, "/v1/generations/nope",
                 "/v1/generations/gen_%2e%2e%2fetc", "/v1/generations/gen_" + "A" * 24 + "/events",
                 "/v1/nothing-here"]:
        assert_error(api.get(path), 404, "not_found")
    assert_error(api.post("/v1/generations/gen_" + "A" * 24 + "/cancel"), 404, "not_found")


def test_405_has_the_error_body(api: Api) -> None:
    assert_error(api.session.delete(api.url("/v1/generations")), 405, "method_not_allowed")


def test_409_cancel_after_completion(api: Api) -> None:
    created = api.create("done")
    api.stream(created)
    assert_error(api.post(f"/v1/generations/{created['id']}/cancel"), 409, "conflict")


def test_413_too_large(api: Api) -> None:
    big = {"messages": [{"role": "user", "content": "x" * (1024 * 1024 + 10)}]}
    assert_error(api.post("/v1/generations", big), 413, "too_large")


def test_415_wrong_content_type(api: Api) -> None:
    resp = api.session.post(api.url("/v1/generations"), data=b'{"messages": []}',
                            headers={"Content-Type": "text/plain"})
    assert_error(resp, 415, "unsupported_media_type")


@pytest.fixture(scope="module")
def auth_stack(redis_server: Any) -> Any:
    stack = Stack(redis_server.url, {"SPOOL_API_KEYS": KEYS, "SPOOL_SECRET_KEY": SECRET})
    stack.start_web()
    stack.start_worker()
    yield stack
    stack.close()


def test_401_without_or_with_a_wrong_key(auth_stack: Stack) -> None:
    anonymous, wrong = Api(auth_stack), Api(auth_stack, key="key-nobody")
    for client in (anonymous, wrong):
        assert_error(client.post("/v1/generations", {"messages": MESSAGES}), 401, "unauthorized")
        assert_error(client.get("/v1/generations/gen_" + "A" * 24), 401, "unauthorized")
        assert_error(client.post("/v1/chat", {"messages": MESSAGES}), 401, "unauthorized")


def test_tenants_and_stream_tokens(auth_stack: Stack) -> None:
    acme, globex = Api(auth_stack, "key-acme-0123456789"), Api(auth_stack, "key-globex-0123456789")
    mine, theirs = acme.create("acme secret"), globex.create("globex secret")
    # Another tenant's id is simply not found, on every endpoint.
    assert_error(globex.get(f"/v1/generations/{mine['id']}"), 404, "not_found")
    assert_error(globex.post(f"/v1/generations/{mine['id']}/cancel"), 404, "not_found")
    assert_error(globex.get(f"/v1/generations/{mine['id']}/events"), 404, "not_found")
    # The stream URL's token opens its own generation without any header...
    anonymous = Api(auth_stack)
    events = anonymous.stream(mine).events
    assert "".join(e.data["text"] for e in events if e.event == "delta") == "acme secret"
    # ...and never another one.
    token = mine["stream_url"].split("token=")[1]
    resp = anonymous.get(f"/v1/generations/{theirs['id']}/events?token={token}")
    assert_error(resp, 401, "unauthorized", "token")
    tampered = mine["stream_url"][:-2] + ("AA" if not mine["stream_url"].endswith("AA") else "BB")
    assert_error(anonymous.get(tampered), 401, "unauthorized", "token")
    assert_error(anonymous.get(f"/v1/generations/{mine['id']}/events"), 401, "unauthorized")
    # The owner's key works on the events route too.
    assert acme.stream({"stream_url": f"/v1/generations/{mine['id']}/events"}).status == 200


def test_410_after_retention_then_404(make_stack: StackFactory) -> None:
    stack = make_stack(env={"SPOOL_RETENTION_S": "1", "SPOOL_TOMBSTONE_S": "2"})
    client = Api(stack)
    created = client.create("short-lived")
    client.stream(created)
    path = f"/v1/generations/{created['id']}"
    wait_until(lambda: client.get(path).status_code == 410, timeout=10, what="expiry")
    assert_error(client.get(path), 410, "expired")
    assert_error(client.get(path + "/events"), 410, "expired")
    assert_error(client.post(path + "/cancel"), 410, "expired")
    wait_until(lambda: client.get(path).status_code == 404, timeout=10, what="tombstone expiry")


def test_503_when_redis_is_down_but_sse_asks_to_retry(make_stack: StackFactory) -> None:
    private = RedisServer()
    private.start()
    try:
        stack = Stack(private.url)
        stack.start_web()
        client = Api(stack)
        body = client.post("/v1/generations", {"messages": MESSAGES}).json()
        private.stop()
        assert_error(client.post("/v1/generations", {"messages": MESSAGES}), 503, "unavailable")
        assert_error(client.get(f"/v1/generations/{body['id']}"), 503, "unavailable")
        assert client.get("/readyz").status_code == 503
        # EventSource gives up on any non-200: the stream route says "retry" instead.
        resp = client.get(body["stream_url"])
        assert resp.status_code == 200
        assert resp.text.startswith("retry: 1000\n\n")
        assert "event:" not in resp.text
        private.start()
        wait_until(lambda: client.get("/healthz").ok)
        time.sleep(0.2)
        assert client.post("/v1/generations", {"messages": MESSAGES}).status_code == 202
        stack.close()
    finally:
        private.stop()
