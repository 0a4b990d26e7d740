"""Hostile input: every malformed body, id and resume point is a 4xx with API.md's body.

Runs on the shared dev-mode stack; at the end the web log must hold no traceback.
"""

from __future__ import annotations

import http.client
import json
import secrets
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from tests.conftest import FAST_MOCK, Api
from tests.harness import Stack

GOOD = {"messages": [{"role": "user", "content": "hi"}], "mock": FAST_MOCK}


def assert_error(resp: requests.Response, status: int, type_: str,
                 param: str | None = "any") -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "param"}
    assert body["error"]["type"] == type_
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in resp.text
    if param != "any":
        assert body["error"]["param"] == param, body
    return body


def post_raw(api: Api, data: bytes, content_type: str | None = "application/json",
             path: str = "/v1/generations") -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(api.url(path), data=data, headers=headers, timeout=30)


MALFORMED_BODIES = {
    "truncated": b'{"messages": [',
    "trailing comma": b'{"messages": [],}',
    "single quotes": b"{'messages': []}",
    "NaN": b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
    "Infinity": b'{"messages": [{"role": "user", "content": "x"}], "temperature": Infinity}',
    "-Infinity": b'{"messages": [{"role": "user", "content": "x"}], "temperature": -Infinity}',
    "invalid utf-8": b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
    "overlong utf-8": b'{"messages": [{"role": "user", "content": "\xc0\xaf"}]}',
    "lone surrogate": b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    "utf-16 body": '{"messages": []}'.encode("utf-16"),
    "nested 2000": b"[" * 2000 + b"]" * 2000,
    "nested 100 in tools": (b'{"messages": [{"role": "user", "content": "x"}], "tools": '
                            b'[{"type": "function", "function": {"name": "f", "parameters": '
                            + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}}]}"),
    "empty": b"",
    "whitespace": b"   \n ",
    "array": b"[]",
    "string": b'"hello"',
    "number": b"42",
    "null": b"null",
    "two objects": b"{}{}",
    "NUL byte": b'{"messages": []}\x00',
}


@pytest.mark.parametrize("name", list(MALFORMED_BODIES))
@pytest.mark.parametrize("path", ["/v1/generations", "/v1/chat"])
def test_malformed_json_is_400(api: Api, name: str, path: str) -> None:
    assert_error(post_raw(api, MALFORMED_BODIES[name], path=path), 400, "invalid_request")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx",
                                          "text/json"])
def test_wrong_content_type_is_415(api: Api, content_type: str | None) -> None:
    resp = post_raw(api, json.dumps(GOOD).encode(), content_type)
    assert_error(resp, 415, "unsupported_media_type")


def test_json_with_charset_parameter_is_fine(api: Api) -> None:
    resp = post_raw(api, json.dumps(GOOD).encode(), "application/json; charset=utf-8")
    assert resp.status_code == 202, resp.text


def test_body_over_limit_is_413(api: Api) -> None:
    big = {"messages": [{"role": "user", "content": "x" * (1024 * 1024 + 10)}]}
    assert_error(post_raw(api, json.dumps(big).encode()), 413, "too_large")
    # Streamed without Content-Length (chunked): still refused, not buffered whole.
    chunks = (b"x" * 65536 for _ in range(40))
    resp = requests.post(api.url("/v1/generations"), data=chunks,
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert_error(resp, 413, "too_large")


def with_fields(**fields: Any) -> dict[str, Any]:
    return {**GOOD, **fields}


def message(**fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": "x", **fields}


INVALID_FIELDS: list[tuple[str, dict[str, Any], str | None]] = [
    ("no messages", {"mock": FAST_MOCK}, "messages"),
    ("empty messages", with_fields(messages=[]), "messages"),
    ("too many messages", with_fields(messages=[message()] * 1001), "messages"),
    ("messages not a list", with_fields(messages={"role": "user"}), "messages"),
    ("bad role", with_fields(messages=[message(role="root")]), "messages.0.role"),
    ("content not a string", with_fields(messages=[message(content=5)]), "messages.0.content"),
    ("content too long", with_fields(messages=[message(content="x" * 500_001)]),
     "messages.0.content"),
    ("unknown message field", with_fields(messages=[message(evil=1)]), "messages.0.evil"),
    ("unknown top field", with_fields(base_url="http://evil"), "base_url"),
    ("system not a string", with_fields(system=["x"]), "system"),
    ("unknown provider", with_fields(provider="evil"), "provider"),
    ("unconfigured provider", with_fields(provider="openai"), "provider"),
    ("empty model", with_fields(model=""), "model"),
    ("max_tokens zero", with_fields(max_tokens=0), "max_tokens"),
    ("max_tokens string", with_fields(max_tokens="5"), "max_tokens"),
    ("max_tokens float", with_fields(max_tokens=5.5), "max_tokens"),
    ("max_tokens bool", with_fields(max_tokens=True), "max_tokens"),
    ("max_tokens over ceiling", with_fields(max_tokens=32769), "max_tokens"),
    ("max_tokens huge", with_fields(max_tokens=10**30), "max_tokens"),
    ("max_tokens past int64", with_fields(max_tokens=2**64 + 1), "max_tokens"),
    ("temperature high", with_fields(temperature=2.01), "temperature"),
    ("temperature negative", with_fields(temperature=-0.1), "temperature"),
    ("temperature string", with_fields(temperature="1"), "temperature"),
    ("tools not a list", with_fields(tools={}), "tools"),
    ("tool bad type", with_fields(tools=[{"type": "code", "function": {"name": "f"}}]),
     "tools.0.type"),
    ("tool bad name", with_fields(tools=[{"type": "function", "function": {"name": "a b"}}]),
     "tools.0.function.name"),
    ("buffer", with_fields(buffer="paragraph"), "buffer"),
    ("priority", with_fields(priority="urgent"), "priority"),
    ("metadata not an object", with_fields(metadata=["a"]), "metadata"),
    ("metadata 17 keys", with_fields(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
    ("metadata empty key", with_fields(metadata={"": "v"}), "metadata"),
    ("metadata long key", with_fields(metadata={"k" * 65: "v"}), "metadata"),
    ("metadata long value", with_fields(metadata={"k": "v" * 513}), "metadata.k"),
    ("metadata number value", with_fields(metadata={"k": 1}), "metadata.k"),
    ("metadata nested value", with_fields(metadata={"k": {"a": "b"}}), "metadata.k"),
    ("mock not an object", with_fields(mock="fast"), "mock"),
    ("mock unknown option", with_fields(mock={"speed": 1}), "mock.speed"),
    ("mock negative tps", with_fields(mock={"tokens_per_second": -1}), "mock.tokens_per_second"),
    ("mock chunk", with_fields(mock={"chunk": "word"}), "mock.chunk"),
    ("mock fail_with", with_fields(mock={"fail_with": "boom"}), "mock.fail_with"),
    ("mock fail_after huge", with_fields(mock={"fail_after_tokens": 2**63}),
     "mock.fail_after_tokens"),
    ("idempotency_key empty", with_fields(idempotency_key=""), "idempotency_key"),
    ("idempotency_key long", with_fields(idempotency_key="k" * 257), "idempotency_key"),
    ("abandon zero", with_fields(abandon_after_s=0), "abandon_after_s"),
    ("abandon huge", with_fields(abandon_after_s=10**12), "abandon_after_s"),
    ("response_format", with_fields(response_format={"type": "xml"}), "response_format.type"),
]


@pytest.mark.parametrize("body,param", [(b, p) for _, b, p in INVALID_FIELDS],
                         ids=[name for name, _, _ in INVALID_FIELDS])
def test_invalid_fields_name_the_param(api: Api, body: dict[str, Any], param: str) -> None:
    resp = api.post("/v1/generations", body)
    found = assert_error(resp, 400, "invalid_request", param)
    assert param in found["error"]["message"]


HOSTILE_IDS = [
    "nope", "gen_", "gen_short", "gen_" + "a" * 300, "batch_" + "a" * 24,
    "gen_" + "a" * 23 + "%2F..%2F..", "..%2F..%2Fetc%2Fpasswd", "gen_%00" + "a" * 24,
    "gen_" + "é" * 24, "gen_%F0%9F%99%82" + "a" * 22, "gen_%FF%FE" + "a" * 22,
    "gen_aaaaaaaaaaaaaaaaaaaaaaaa%0d%0aX-Injected:%20yes", "*", "gen_" + "a" * 22 + "*",
    "GEN_" + "a" * 24, " gen_" + "a" * 24, "gen_" + secrets.token_urlsafe(18),
]


@pytest.mark.parametrize("gen_id", HOSTILE_IDS)
def test_hostile_path_ids_are_404(api: Api, gen_id: str) -> None:
    for resp in (
        api.get(f"/v1/generations/{gen_id}"),
        api.post(f"/v1/generations/{gen_id}/cancel"),
        api.get(f"/v1/generations/{gen_id}/events"),
        api.get(f"/v1/generations/{gen_id}/events?token=1.abc&after=1"),
    ):
        assert_error(resp, 404, "not_found")
        assert "X-Injected" not in resp.headers


HOSTILE_POSITIONS = [
    "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "١٢", "²", "1 2", " ", "", "abc", "9" * 17,
    str(2**53), str(2**64), "\u00a0" + "1", "１", "1\u200b", "NaN", "-0",
]


@pytest.fixture(scope="module")
def finished(api: Api) -> dict[str, Any]:
    created = api.create("some text 🙂 for offsets")
    assert api.stream(created).events[-1].event == "done"
    return created


@pytest.mark.parametrize("value", HOSTILE_POSITIONS)
def test_hostile_resume_points_are_400(api: Api, finished: dict[str, Any], value: str) -> None:
    url = api.url(f"/v1/generations/{finished['id']}/events")
    for name in ("after", "offset"):
        resp = requests.get(url, params={name: value}, timeout=30)
        assert_error(resp, 400, "invalid_request", name)
    if value.strip(" \t").isdigit():
        return  # HTTP trims spaces around a header value: " 1" arrives as "1"
    status, body = raw_get(api, f"/v1/generations/{finished['id']}/events",
                           {"Last-Event-ID": value.encode("utf-8")})
    assert status == 400, body
    assert body["error"] == {"type": "invalid_request", "param": "Last-Event-ID",
                             "message": body["error"]["message"]}


def raw_get(api: Api, path: str, headers: dict[str, bytes]) -> tuple[int, Any]:
    """GET with header bytes exactly as given (requests refuses some, e.g. only spaces)."""
    port = api.stack.webs[api.web].port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else SimpleNamespace()
    finally:
        conn.close()


def test_resume_points_in_range_but_wrong(api: Api, finished: dict[str, Any]) -> None:
    url = api.url(f"/v1/generations/{finished['id']}/events")
    # Past the end of the text, and offset mixed with after.
    assert_error(requests.get(url, params={"offset": "100000"}, timeout=30), 400,
                 "invalid_request", "offset")
    assert_error(requests.get(url, params={"offset": "1", "after": "1"}, timeout=30), 400,
                 "invalid_request", "offset")
    # The largest exact integer is accepted as a position: at or past the end is a 204.
    assert requests.get(url, params={"after": str(2**53 - 1)}, timeout=30).status_code == 204
    # Whitespace inside a query value is not a number (a header's is trimmed by HTTP itself).
    for value in (" 2", "2 ", "\t2"):
        assert_error(requests.get(url, params={"after": value}, timeout=30), 400,
                     "invalid_request", "after")


def test_a_live_generation_rejects_a_resume_point_past_its_log(api: Api) -> None:
    created = api.create("slow", mock={"ttft_ms": 3000})
    resp = requests.get(api.url(f"/v1/generations/{created['id']}/events"),
                        params={"after": "50"}, timeout=30)
    assert_error(resp, 400, "invalid_request", "Last-Event-ID")


def test_wrong_method_and_unknown_route(api: Api) -> None:
    resp = requests.delete(api.url("/v1/generations"), timeout=30)
    assert_error(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]
    assert_error(requests.get(api.url("/v1/nothing"), timeout=30), 404, "not_found")
    assert_error(requests.get(api.url("/v1/generations"), timeout=30), 405,
                 "method_not_allowed")


def test_cors_is_off_by_default(api: Api) -> None:
    origin = {"Origin": "https://anyone.example"}
    pre = requests.options(api.url("/v1/generations"),
                           headers={**origin, "Access-Control-Request-Method": "POST"},
                           timeout=30)
    assert "Access-Control-Allow-Origin" not in pre.headers
    resp = requests.get(api.url("/v1/models"), headers=origin, timeout=30)
    assert resp.status_code == 200 and "Access-Control-Allow-Origin" not in resp.headers


def test_dev_mode_warns_at_startup(stack: Stack) -> None:
    assert "authentication is OFF" in stack.webs[0].output()


def test_no_traceback_in_logs(api: Api, stack: Stack) -> None:
    """Last: nothing above made the web process log an unhandled error."""
    output = stack.webs[0].output()
    assert "Traceback" not in output and "unhandled error" not in output


def test_openapi_in_dev_mode_claims_no_auth(api: Api) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    assert "securitySchemes" not in doc["components"] and "security" not in doc
    for operations in doc["paths"].values():
        for operation in operations.values():
            assert "401" not in operation["responses"]


def test_chunked_body_within_limit_is_read_whole(api: Api) -> None:
    body = json.dumps({**GOOD, "system": "s" * 300_000}).encode()
    chunks = (body[i:i + 65536] for i in range(0, len(body), 65536))
    resp = requests.post(api.url("/v1/generations"), data=chunks,
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 202, resp.text
