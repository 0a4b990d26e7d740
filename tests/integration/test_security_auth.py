"""Auth on: keys, tenants, stream tokens, CORS, and keys never reaching a log.

One stack (auth on, two tenants, access log on) serves the whole module.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from spool.tokens import sign_stream_token
from tests.conftest import FAST_MOCK, Api
from tests.harness import Stack, free_port, running_stack

SECRET = "s" * 20 + secrets.token_hex(16)
KEY_A = "ka-" + secrets.token_hex(16)
KEY_A2 = "ka2-" + secrets.token_hex(16)
KEY_B = "kb-" + secrets.token_hex(16)
# A near miss of a real key: still a secret that must not be logged.
WRONG_KEY = KEY_A[:-1] + ("0" if KEY_A[-1] != "0" else "1")
ORIGIN = "https://app.example.test"
# Provider credentials must not leak either; the endpoints are dead loopback ports,
# so the generations fail (and log their failure) without leaving the machine.
OPENAI_KEY = "sk-openai-" + secrets.token_hex(16)
ANTHROPIC_KEY = "sk-ant-" + secrets.token_hex(16)
HOLD = {"ttft_ms": 60_000}  # a generation that stays queued/running for the test


@pytest.fixture(scope="module")
def auth_stack(redis_server: Any) -> Iterator[Stack]:
    with running_stack(redis_server.url, {
            "SPOOL_API_KEYS": f"alpha:{KEY_A},alpha:{KEY_A2},beta:{KEY_B}",
            "SPOOL_SECRET_KEY": SECRET,
            "SPOOL_CORS_ORIGINS": ORIGIN,
            "SPOOL_ACCESS_LOG": "1",
            "SPOOL_LOG_LEVEL": "debug",
            "SPOOL_WEB_GRACE_S": "2",  # idle keep-alive clients would hold shutdown for 20 s
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
            "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{free_port()}",
            "SPOOL_RETRY_ATTEMPTS": "1",
            "SPOOL_RETRY_BASE_S": "0",
        }) as stack:
        yield stack


@pytest.fixture(scope="module")
def alpha(auth_stack: Stack) -> Api:
    return Api(auth_stack, key=KEY_A)


@pytest.fixture(scope="module")
def beta(auth_stack: Stack) -> Api:
    return Api(auth_stack, key=KEY_B)


def assert_error(resp: requests.Response, status: int, type_: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body["error"]) == {"type", "message", "param"}
    assert body["error"]["type"] == type_
    return body


def v1_requests(gen_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    body = {"messages": [{"role": "user", "content": "hi"}], "mock": FAST_MOCK}
    return [
        ("POST", "/v1/generations", body),
        ("POST", "/v1/chat", body),
        ("GET", f"/v1/generations/{gen_id}", None),
        ("POST", f"/v1/generations/{gen_id}/cancel", None),
        ("GET", f"/v1/generations/{gen_id}/events", None),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/mock/mock-1", None),
        ("POST", "/v1/chat/completions", {"model": "mock/mock-1", "messages": body["messages"]}),
    ]


# The OpenAI facade answers errors in OpenAI's shape (type + code) for its SDKs.
FACADE = ("/v1/models", "/v1/chat/completions")


def assert_unauthorized(resp: requests.Response, path: str) -> None:
    if not path.startswith(FACADE):
        assert_error(resp, 401, "unauthorized")
        return
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "invalid_api_key"


BAD_AUTH_HEADERS = [
    {},
    {"Authorization": f"Bearer {WRONG_KEY}"},
    {"Authorization": f"Basic {KEY_A}"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": KEY_A},
    {"Authorization": f"Bearer {KEY_A} extra"},
    {"Authorization": f"Bearer {KEY_A.upper()}"},
]


@pytest.mark.parametrize("headers", BAD_AUTH_HEADERS, ids=range(len(BAD_AUTH_HEADERS)))
def test_missing_or_wrong_key_is_401_everywhere(
    alpha: Api, auth_stack: Stack, headers: dict[str, str]
) -> None:
    created = alpha.create("x")
    for method, path, body in v1_requests(created["id"]):
        resp = requests.request(method, auth_stack.url(path), json=body, headers=headers,
                                timeout=30)
        assert_unauthorized(resp, path)
        assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_every_key_of_a_tenant_works(auth_stack: Stack, alpha: Api) -> None:
    created = alpha.create("shared by alpha's keys")
    other_key = Api(auth_stack, key=KEY_A2)
    assert other_key.generation(created["id"])["id"] == created["id"]


def test_ids_are_unguessable(alpha: Api) -> None:
    ids = {alpha.create("x")["id"] for _ in range(5)}
    assert len(ids) == 5
    for gen_id in ids:
        assert re.fullmatch(r"gen_[A-Za-z0-9_-]{24,}", gen_id)  # 24 chars x 6 bits = 144


def test_other_tenant_gets_404_on_every_endpoint(alpha: Api, beta: Api) -> None:
    created = alpha.create("alpha's secret", mock=HOLD)
    gen_id = created["id"]
    unknown = "gen_" + secrets.token_urlsafe(18)
    for target in (gen_id, unknown):
        for resp in (
            beta.get(f"/v1/generations/{target}"),
            beta.post(f"/v1/generations/{target}/cancel"),
            beta.get(f"/v1/generations/{target}/events"),
        ):
            body = assert_error(resp, 404, "not_found")
            assert "alpha" not in resp.text and gen_id not in resp.text
            assert body["error"]["message"] == "no such generation"
    # beta's cancel did nothing: alpha's generation is still alive, and alpha can end it.
    assert alpha.generation(gen_id)["status"] in ("queued", "in_progress")
    assert alpha.post(f"/v1/generations/{gen_id}/cancel").status_code == 202


def test_idempotency_keys_are_per_tenant(alpha: Api, beta: Api) -> None:
    key = "shared-" + secrets.token_hex(8)
    mine = alpha.create("alpha's answer", idempotency_key=key)
    theirs = beta.create("beta's answer", idempotency_key=key)
    assert mine["id"] != theirs["id"]
    assert alpha.create("again", idempotency_key=key)["id"] == mine["id"]
    assert beta.stream(theirs).events[-1].event == "done"
    assert beta.generation(theirs["id"])["text"] == "beta's answer"


def test_owner_reads_events_with_key_and_no_token(alpha: Api, auth_stack: Stack) -> None:
    created = alpha.create("with the key")
    url = auth_stack.url(f"/v1/generations/{created['id']}/events")
    from tests.sseclient import read_stream

    result = read_stream(url, {"Authorization": f"Bearer {KEY_A}"})
    assert result.status == 200 and result.events[-1].event == "done"


def test_stream_token_opens_only_its_generation(alpha: Api, beta: Api,
                                                auth_stack: Stack) -> None:
    mine = alpha.create("token text")
    theirs = beta.create("beta text")
    assert "token=" in mine["stream_url"]
    token = mine["stream_url"].split("token=", 1)[1]
    # Without any Authorization header (as EventSource): the token alone opens it.
    from tests.sseclient import read_stream

    result = read_stream(auth_stack.url(mine["stream_url"]))
    assert result.status == 200
    assert "".join(e.data["text"] for e in result.events if e.event == "delta") == "token text"
    # The same token on another generation: 401, whoever owns that one.
    for other in (theirs["id"], alpha.create("another of alpha's")["id"]):
        resp = requests.get(auth_stack.url(f"/v1/generations/{other}/events?token={token}"),
                            timeout=30)
        body = assert_error(resp, 401, "unauthorized")
        assert body["error"]["param"] == "token"
    # A token never stands in for a key on other endpoints.
    resp = requests.get(auth_stack.url(f"/v1/generations/{mine['id']}?token={token}"),
                        timeout=30)
    assert_error(resp, 401, "unauthorized")


def tampered(token: str) -> list[str]:
    expires, _, mac = token.partition(".")
    flip = "A" if mac[0] != "A" else "B"
    return [
        f"{expires}.{flip}{mac[1:]}",            # MAC changed
        f"{int(expires) + 1000}.{mac}",         # expiry extended
        f"{expires}.{mac[:-2]}",                # truncated
        f"{expires}{mac}",                      # separator removed
        "",
        ".",
        "9" * 13 + "." + mac,                   # absurd expiry
        f"{expires}.{mac}\u00e9",               # non-ASCII
        f"-{expires}.{mac}",
    ]


def test_tampered_and_expired_tokens_are_401(alpha: Api, auth_stack: Stack) -> None:
    created = alpha.create("guarded")
    gen_id = created["id"]
    token = created["stream_url"].split("token=", 1)[1]
    expired = sign_stream_token(SECRET, gen_id, ttl_s=-5)
    wrong_secret = sign_stream_token("x" * 40, gen_id, ttl_s=3600)
    for bad in [*tampered(token), expired, wrong_secret]:
        resp = requests.get(auth_stack.url(f"/v1/generations/{gen_id}/events"),
                            params={"token": bad}, timeout=30)
        assert_error(resp, 401, "unauthorized")
    # A bad token is not rescued by a good key: the token is what was presented.
    resp = alpha.get(f"/v1/generations/{gen_id}/events", params={"token": expired})
    assert_error(resp, 401, "unauthorized")


def test_cors_allows_only_configured_origin(auth_stack: Stack) -> None:
    preflight = requests.options(
        auth_stack.url("/v1/generations/gen_x/events"),
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "last-event-id, authorization"},
        timeout=30,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = {h.strip().lower()
               for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"last-event-id", "authorization", "content-type"} <= allowed
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    # A real request from the allowed origin carries the header, errors included.
    resp = requests.get(auth_stack.url("/v1/models"), headers={"Origin": ORIGIN}, timeout=30)
    assert resp.status_code == 401
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in resp.headers["Vary"]
    # Any other origin gets no CORS grant, on preflight or request.
    for origin in ("https://evil.example", ORIGIN + ".evil.example", "null"):
        pre = requests.options(auth_stack.url("/v1/generations"),
                               headers={"Origin": origin,
                                        "Access-Control-Request-Method": "POST"}, timeout=30)
        assert "Access-Control-Allow-Origin" not in pre.headers
        got = requests.get(auth_stack.url("/healthz"), headers={"Origin": origin}, timeout=30)
        assert "Access-Control-Allow-Origin" not in got.headers


def test_keys_and_secret_never_logged(alpha: Api, auth_stack: Stack) -> None:
    """Runs last in the module: every request above used right and wrong keys."""
    for key in (KEY_A, KEY_B, WRONG_KEY, "Bearer-lookalike-" + KEY_B):
        requests.get(auth_stack.url("/v1/models"), headers={"Authorization": f"Bearer {key}"},
                     timeout=30)
    created = alpha.create("logged?")
    alpha.stream(created)
    failed_ids = []
    for provider in ("openai", "anthropic"):
        failing = alpha.create(None, provider=provider)
        assert alpha.stream(failing).events[-1].event == "error"
        failed_ids.append(failing["id"])
    requests.post(auth_stack.url("/v1/generations"), data=b"{bad json",
                  headers={"Authorization": f"Bearer {WRONG_KEY}",
                           "Content-Type": "application/json"}, timeout=30)
    # Some clients send a key as a Basic-auth user name, which access logs love to print.
    basic = base64.b64encode(f"{KEY_B}:".encode()).decode()
    requests.get(auth_stack.url("/v1/models"), headers={"Authorization": f"Basic {basic}"},
                 timeout=30)
    token = created["stream_url"].split("token=", 1)[1]
    procs = [*auth_stack.webs, *auth_stack.workers]
    logs = "\n".join(proc.output() for proc in procs)
    assert "GET /v1/models" in logs  # the access log is on, so this check can see requests
    assert created["id"] in logs  # and the worker's log is included
    assert all(gen_id in logs for gen_id in failed_ids)  # their failures were logged
    for secret in (KEY_A, KEY_A2, KEY_B, WRONG_KEY, SECRET, token, OPENAI_KEY, ANTHROPIC_KEY):
        assert secret not in logs
