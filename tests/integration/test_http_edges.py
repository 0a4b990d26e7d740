"""Malformed HTTP over raw sockets: always API.md's JSON 4xx, never 5xx, never a hang.

What gunicorn refuses before Flask sees it (URL or headers too long, a bad
request line, bad framing) and what a slow or silent client does (half a
head, a TLS ClientHello on the plain port, a short body, a huge chunk size)
against a real gunicorn web process with short read deadlines.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.harness import Stack

HEAD_S = 1.0  # SPOOL_HEADER_TIMEOUT_S for this module's web process
BODY_S = 1.5  # SPOOL_BODY_TIMEOUT_S
SLACK_S = 3.0  # scheduling noise on a busy 2-core machine
GOOD_JSON = b'{"messages": [{"role": "user", "content": "hi"}]}'


@dataclass
class Answer:
    status: int | None  # None: closed without a response
    headers: dict[str, str]
    body: bytes
    seconds: float


@pytest.fixture(scope="module")
def edge_stack(redis_server: Any) -> Iterator[Stack]:
    stack = Stack(redis_server.url, {"SPOOL_HEADER_TIMEOUT_S": str(HEAD_S),
                                     "SPOOL_BODY_TIMEOUT_S": str(BODY_S)})
    stack.start_web()
    yield stack
    stack.close()


def exchange(stack: Stack, data: bytes, trickle: list[bytes] | None = None,
             gap_s: float = 0.0, limit_s: float = 20.0) -> Answer:
    """Send `data` (then `trickle` pieces `gap_s` apart); read until the server closes."""
    port = stack.webs[0].port
    assert port is not None
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
        if data:
            sock.sendall(data)
        for piece in trickle or []:
            time.sleep(gap_s)
            try:
                sock.sendall(piece)
            except OSError:
                break  # the server closed on us: what a slowloris should get
        raw = b""
        sock.settimeout(max(0.1, limit_s - (time.monotonic() - started)))
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"no close after {limit_s} s; got {raw[:200]!r}") from None
            if not chunk:
                break
            raw += chunk
            if _complete(raw):
                break  # a whole response on a kept-alive connection
    seconds = time.monotonic() - started
    if not raw:
        return Answer(None, {}, b"", seconds)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, body, seconds)


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def assert_json_4xx(answer: Answer, status: int) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    payload: dict[str, Any] = json.loads(answer.body)
    assert set(payload["error"]) == {"type", "message", "param"}, payload
    assert payload["error"]["message"]
    return payload


def request(method: bytes, path: bytes, headers: list[bytes], body: bytes = b"",
            version: bytes = b"HTTP/1.1") -> bytes:
    lines = [method + b" " + path + b" " + version, b"Host: spool", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


GEN = b"/v1/generations"
JSON_CT = b"Content-Type: application/json"

# name -> (request bytes, expected status)
REJECTS: dict[str, tuple[bytes, int]] = {
    "url_10kb": (request(b"GET", b"/v1/generations/" + b"a" * 10_000, []), 414),
    "one_huge_header": (request(b"GET", b"/healthz", [b"X-Big: " + b"b" * 10_000]), 431),
    "many_headers": (request(b"GET", b"/healthz",
                             [b"X-H%d: v" % i for i in range(200)]), 431),
    "bad_request_line": (b"GARBAGE\r\n\r\n", 400),
    "bad_method": (request(b"G@T", b"/healthz", []), 400),
    "bad_version": (request(b"GET", b"/healthz", [], version=b"HTTP/9.Z"), 400),
    "nul_in_header": (request(b"GET", b"/healthz", [b"X-A: a\x00b"]), 400),
    "obs_fold": (request(b"GET", b"/healthz", [b"X-A: a", b" folded"]), 400),
    "bad_content_length": (request(b"POST", GEN, [JSON_CT, b"Content-Length: ab"]), 400),
    "negative_content_length": (request(b"POST", GEN, [JSON_CT, b"Content-Length: -1"]), 400),
    "duplicate_content_length": (request(b"POST", GEN, [
        JSON_CT, b"Content-Length: 2", b"Content-Length: 3"], b"{}"), 400),
    "cl_and_chunked": (request(b"POST", GEN, [
        JSON_CT, b"Content-Length: 2", b"Transfer-Encoding: chunked"], b"0\r\n\r\n"), 400),
    "unknown_transfer_encoding": (request(b"POST", GEN, [
        JSON_CT, b"Transfer-Encoding: foo"], b"{}"), 400),
    "bad_chunk_size": (request(b"POST", GEN, [
        JSON_CT, b"Transfer-Encoding: chunked"], b"zz\r\n{}\r\n0\r\n\r\n"), 400),
    "chunk_missing_crlf": (request(b"POST", GEN, [
        JSON_CT, b"Transfer-Encoding: chunked"], b"2\r\n{}XX0\r\n\r\n"), 400),
    "bad_chunk_extension": (request(b"POST", GEN, [
        JSON_CT, b"Transfer-Encoding: chunked"], b"2;\x01\r\n{}\r\n0\r\n\r\n"), 400),
    "space_before_colon": (request(b"GET", b"/healthz", [b"X-A : a"]), 400),
    "bad_header_name": (request(b"GET", b"/healthz", [b"X(A): a"]), 400),
    "lf_only_line": (b"GET /healthz HTTP/1.1\nHost: x\n\n", 400),
    "duplicate_json_keys": (request(b"POST", GEN, [
        JSON_CT, b"Content-Length: %d" % len(b'{"messages": [], "messages": []}')],
        b'{"messages": [], "messages": []}'), 400),
}


@pytest.mark.parametrize("name", sorted(REJECTS))
def test_malformed_request_is_a_json_4xx(edge_stack: Stack, name: str) -> None:
    data, status = REJECTS[name]
    answer = exchange(edge_stack, data, limit_s=HEAD_S + BODY_S + SLACK_S)
    assert_json_4xx(answer, status)


def test_duplicate_keys_nested_and_in_a_batch_row(edge_stack: Stack) -> None:
    url = edge_stack.url("/v1/generations")
    body = b'{"messages": [{"role": "user", "content": "a", "content": "b"}]}'
    resp = requests.post(url, data=body, headers={"Content-Type": "application/json"},
                         timeout=30)
    assert resp.status_code == 400 and "duplicate key" in resp.json()["error"]["message"]
    rows = (b'{"custom_id": "a", "messages": [{"role": "user", "content": "x"}],'
            b' "max_tokens": 1, "max_tokens": 9}\n')
    resp = requests.post(edge_stack.url("/v1/batches"), data=rows,
                         headers={"Content-Type": "application/x-ndjson"}, timeout=30)
    assert resp.status_code == 400 and "duplicate key" in resp.json()["error"]["message"]


def test_silent_connection_is_closed(edge_stack: Stack) -> None:
    answer = exchange(edge_stack, b"", limit_s=HEAD_S + SLACK_S)
    assert answer.status is None and answer.seconds >= HEAD_S * 0.9


def test_tls_client_hello_on_plain_port_is_closed(edge_stack: Stack) -> None:
    hello = bytes.fromhex("16030100c4010000c00303") + bytes(range(32)) + b"\x00\x00\x02\x13\x01"
    answer = exchange(edge_stack, hello, limit_s=HEAD_S + SLACK_S)
    assert answer.status in (None, 400), answer  # closed, or a JSON 400: never a hang
    if answer.status is not None:
        assert_json_4xx(answer, 400)


def test_slowloris_head_is_cut(edge_stack: Stack) -> None:
    # One header byte every 0.2 s: each read makes progress, the head never ends.
    trickle = [b"X"] * 40
    answer = exchange(edge_stack, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                      trickle, gap_s=0.2, limit_s=HEAD_S + 8 + SLACK_S)
    assert answer.status is None
    assert answer.seconds < HEAD_S + SLACK_S + 8 * 0.2 * 40 / 8  # well before the trickle ends


def test_short_body_is_a_408(edge_stack: Stack) -> None:
    data = request(b"POST", GEN, [JSON_CT, b"Content-Length: 100"], b'{"messages"')
    answer = exchange(edge_stack, data, limit_s=BODY_S + SLACK_S)
    payload = assert_json_4xx(answer, 408)
    assert payload["error"]["type"] == "timeout"
    assert answer.headers["connection"] == "close"


def test_huge_chunk_size_is_cut(edge_stack: Stack) -> None:
    data = request(b"POST", GEN, [JSON_CT, b"Transfer-Encoding: chunked"], b"fffffff\r\n{")
    answer = exchange(edge_stack, data, limit_s=BODY_S + SLACK_S)
    assert answer.status in (400, 408, 413), answer
    assert_json_4xx(answer, answer.status or 0)


def test_keepalive_still_works_and_idles_longer_than_the_head_limit(edge_stack: Stack) -> None:
    port = edge_stack.webs[0].port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(request(b"GET", b"/healthz", []))
            raw = b""
            while not _complete(raw):
                chunk = sock.recv(65536)
                assert chunk, f"closed after {raw!r}"
                raw += chunk
            assert raw.startswith(b"HTTP/1.1 200")
            time.sleep(HEAD_S * 1.5)  # idle between requests: keepalive, not the head limit


def test_good_requests_still_work_and_nothing_crashed(edge_stack: Stack) -> None:
    chunked = request(b"POST", GEN, [JSON_CT, b"Transfer-Encoding: chunked",
                                     b"Connection: close"],
                      b"%x\r\n%s\r\n0\r\n\r\n" % (len(GOOD_JSON), GOOD_JSON))
    answer = exchange(edge_stack, chunked, limit_s=10)
    assert answer.status == 202, answer
    assert requests.get(edge_stack.url("/healthz"), timeout=10).status_code == 200
    assert edge_stack.webs[0].alive()
    log = edge_stack.logs()
    assert "Traceback" not in log, log[-3000:]
