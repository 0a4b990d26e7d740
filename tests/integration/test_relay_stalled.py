"""A thousand SSE connections that never read must not hurt anyone else.

Real gunicorn and worker processes; the stalled readers are raw sockets with
a small receive buffer that send their GET and then read nothing. While they
hang on a fast ~250 KB answer, the same web process must keep answering a
POST, /healthz and a normal reader promptly, and hold a bounded amount of
memory per stalled connection, handed back (to a bounded, non-growing rest)
when they close.

On Linux the kernel's send buffer grows to take the whole answer (tcp_wmem
autotuning, ~360 KB queued per connection here), so the relay is never
blocked by them; what a stalled reader used to cost the web was its
kept-alive connection waiting for a next request (~20 KB), which the worker
no longer keeps for a client that left its answer unread (webapp/unread.py).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.conftest import Api, StackFactory
from tests.harness import Stack, wait_until
from tests.integration.test_relay_direct import dechunk
from tests.sseclient import Parser

STALLED = 1000
ANSWER_CHARS = 250_000
RCVBUF = 4096  # the stalled clients' receive buffer: the server's writes block early
MAX_KB_PER_STALLED = 30  # web RSS growth per stalled connection, answer streamed
# After all of them close, RSS left above the warm baseline: what the first
# crowd of 500 concurrent relays made the process grow by (allocator arenas
# pinned by a few survivors born meanwhile; measured +9 to +10 MB, +12 to +16
# when each stalled connection was kept alive, docs/architecture.md), and what
# a second identical round may add to it (measured 0-1 MB). On a host half as
# fast, where some relays park (webapp/relay/writes.py), the high-water marks
# moved more from run to run: +10 to +15 MB, and 0 to 6 MB for a second round
# (2026-12-05, seven runs); a leak of a page per reader would be ~250 MB.
MAX_RETAINED_MB = 18
MAX_CREEP_MB = 6
SETTLE_S = 2.5  # after the web went idle (closes handled): heaptrim's delayed trim (1 s)
TOKENS = ANSWER_CHARS // 4  # the mock's tokens are ~4 characters
HOT_STREAM_S = 6.0  # how long the hot answer streams: the checks run meanwhile
# Bounds that only a starved process misses (the relay that offered every
# message to every full queue answered a POST in 21 s, /healthz in 5 s).
PROMPT_S = 3.0
# A new reader's whole stream waits its turn on the readers' pool behind the
# crowd's log reads (FIFO, webapp/fairqueue.py): 0.7-1.1 s measured on a fast
# host, 3.1-4.4 s on one half as fast. Starved, it waited until the crowd was
# done (15-22 s); so its bound is the hot answer's own duration: it must be
# served while the crowd is still being served.
READ_BEHIND_CROWD_S = HOT_STREAM_S

# The web is idle (its relays done, closes handled) when it spends under
# this share of a core over a window (its own timers cost ~1 %).
IDLE_CPU = 0.05
IDLE_WINDOW_S = 0.5
IDLE_TIMEOUT_S = 60.0

pytestmark = pytest.mark.slow


def web_cpu_s(stack: Stack) -> float:
    """CPU seconds (user + system) of the gunicorn worker processes so far."""
    master = psutil.Process(stack.webs[0].proc.pid)
    return sum(sum(child.cpu_times()[:2]) for child in master.children())


def wait_web_idle(stack: Stack, timeout: float = IDLE_TIMEOUT_S) -> None:
    """Until the web spends under IDLE_CPU of a core over IDLE_WINDOW_S.

    A fixed pause assumed the host's speed: on a host half as fast, 500
    relays were still copying the answer a second after it ended, and the
    memory they held in flight was counted as what a stalled reader keeps.
    """
    def quiet() -> bool:
        before = web_cpu_s(stack)
        time.sleep(IDLE_WINDOW_S)
        return web_cpu_s(stack) - before < IDLE_CPU * IDLE_WINDOW_S

    wait_until(quiet, timeout=timeout, interval=0, what="the web process to go idle")


def web_rss(stack: Stack) -> int:
    """RSS of the gunicorn worker process (the master only forks it)."""
    master = psutil.Process(stack.webs[0].proc.pid)
    return sum(child.memory_info().rss for child in master.children())


def open_stalled(port: int, path: str, n: int) -> list[socket.socket]:
    """`n` connections that send the GET and never read a byte."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
    sockets = []
    for _ in range(n):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        sockets.append(sock)
    return sockets


def streamed_text(api: Api, created: dict[str, Any]) -> str:
    """The text of a whole stream, checking ids 1..n and one terminal event at the end."""
    result = api.stream(created)
    assert result.status == 200 and result.complete
    return checked_text(result.events)


def checked_text(events: list[Any]) -> str:
    """The delta text of a stream's events: ids 1..n, one terminal event, `done`, at the end."""
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.event for e in events if e.event in ("done", "error", "cancelled")] == ["done"]
    assert events[-1].event == "done"
    return "".join(e.data["text"] for e in events if e.event == "delta")


def timed(call: object) -> float:
    started = time.monotonic()
    call()  # type: ignore[operator]
    return time.monotonic() - started


@pytest.fixture
def stalled_stack(make_stack: StackFactory) -> Iterator[Stack]:
    yield make_stack(env={"SPOOL_MAX_TOKENS_LIMIT": str(TOKENS + 10),
                          "SPOOL_RATE_LIMIT": "100000"})


def stall_on_a_big_answer(api: Api, stack: Stack, text: str, n: int
                          ) -> tuple[dict[str, Any], list[socket.socket]]:
    """`n` stalled readers of a new ~250 KB answer, which then streams to its end."""
    port = stack.webs[0].port
    assert port is not None
    big = api.create(text, mock={"tokens_per_second": 0, "ttft_ms": 3000},
                     max_tokens=ANSWER_CHARS // 4 + 10)
    sockets = open_stalled(port, big["stream_url"], n)
    wait_until(lambda: api.generation(big["id"])["status"] == "completed", timeout=120,
               what="the big answer to finish")
    wait_web_idle(stack)  # the relays have handed it all to the kernel (webapp/unread.py)
    return big, sockets


def test_stalled_readers_do_not_slow_anyone_and_their_memory_is_bounded(
        stalled_stack: Stack) -> None:
    api = Api(stalled_stack)
    text = ("The quick brown fox jumps over the lazy dog. " * 6000)[:ANSWER_CHARS]
    warm = api.create("warm up")
    assert streamed_text(api, warm) == "warm up"
    baseline = web_rss(stalled_stack)
    half = STALLED // 2
    sockets: list[socket.socket] = []
    try:
        _, first = stall_on_a_big_answer(api, stalled_stack, text, half)
        sockets += first
        with_half = web_rss(stalled_stack)
        big, second = stall_on_a_big_answer(api, stalled_stack, text, STALLED - half)
        sockets += second
        with_all = web_rss(stalled_stack)
        # Everyone else is served at once while the stalled readers hang on.
        assert timed(lambda: api.get("/healthz").raise_for_status()) < PROMPT_S
        normal: dict[str, Any] = {}
        post_s = timed(lambda: normal.update(api.create("a normal reader", mock={
            "tokens_per_second": 200, "ttft_ms": 0})))
        assert post_s < PROMPT_S
        read_s = timed(lambda: normal.update(text_read=streamed_text(api, normal)))
        assert normal["text_read"] == "a normal reader"
        assert read_s < PROMPT_S
        # A normal reader of the very answer the others stall on gets it all, exactly.
        assert streamed_text(api, big) == text
        # Per stalled connection: the growth from the second batch alone (the
        # first pays for fixed costs: pools growing, the hub's channel, arenas).
        per_conn_kb = (with_all - with_half) / 1024 / (STALLED - half)
        print(f"web RSS: baseline {baseline >> 20} MB, {half} stalled {with_half >> 20} MB, "
              f"{STALLED} stalled {with_all >> 20} MB: {per_conn_kb:.1f} KB per stalled reader")
        assert per_conn_kb <= MAX_KB_PER_STALLED
    finally:
        for sock in sockets:
            sock.close()
    after_close = settled_rss(stalled_stack)
    # A second round of the same crowd (the same two halves) reuses what the
    # first left behind. (A different shape, all 1,000 on one answer, first
    # adds ~4 MB once; identical rounds after that add 0.1-0.3 MB each.)
    again: list[socket.socket] = []
    for size in (half, STALLED - half):
        again += stall_on_a_big_answer(api, stalled_stack, text, size)[1]
    for sock in again:
        sock.close()
    after_second = settled_rss(stalled_stack)
    print(f"web RSS after they closed: {after_close >> 20} MB; "
          f"after a second round of {STALLED}: {after_second >> 20} MB")
    # What stays is the allocator's free space, not objects (tracemalloc:
    # within ~1 MB of baseline after close): bounded, and not growing per round.
    assert after_close - baseline <= MAX_RETAINED_MB << 20
    assert after_second - after_close <= MAX_CREEP_MB << 20
    api.session.close()


def test_a_crowd_on_a_hot_stream_does_not_starve_anyone_else(stalled_stack: Stack) -> None:
    # 1,000 stalled readers attached to an answer that streams for seconds:
    # they catch up from the log over and over, on the readers' Redis pool.
    # A new stream's opening (same pool), a POST and /healthz are served
    # while they do. (A pool that let a returning greenlet take its
    # connection back kept a new reader waiting 15-22 s, until the crowd was done.)
    api = Api(stalled_stack)
    port = stalled_stack.webs[0].port
    assert port is not None
    text = ("A hot answer that a thousand clients never read. " * 6000)[:ANSWER_CHARS]
    hot = api.create(text, mock={"tokens_per_second": TOKENS / HOT_STREAM_S, "ttft_ms": 0},
                     max_tokens=TOKENS + 10)
    sockets = open_stalled(port, hot["stream_url"], STALLED)
    try:
        time.sleep(1.0)  # all of them attached and catching up
        assert timed(lambda: api.get("/healthz").raise_for_status()) < PROMPT_S
        normal: dict[str, Any] = {}
        assert timed(lambda: normal.update(api.create("a new reader", mock={
            "tokens_per_second": 200, "ttft_ms": 0}))) < PROMPT_S
        assert timed(lambda: normal.update(text_read=streamed_text(api, normal))
                     ) < READ_BEHIND_CROWD_S
        assert normal["text_read"] == "a new reader"
        # ...all of that while the hot answer was still streaming to the crowd.
        assert api.generation(hot["id"])["status"] == "in_progress"
    finally:
        for sock in sockets:
            sock.close()
        # Not kept running for the stack's shutdown (the worker's grace would wait for it).
        api.post(f"/v1/generations/{hot['id']}/cancel")
    api.session.close()


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def sse_text(response: bytes) -> str:
    """The delta text of one raw chunked SSE response (checking one `done`, at its end)."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
    assert body.endswith(b"\r\n0\r\n\r\n")  # the whole chunked body, its end included
    return checked_text(Parser().feed(dechunk(body)))


def test_a_client_that_leaves_its_answer_unread_is_not_kept_waiting_for(
        stalled_stack: Stack) -> None:
    # The kernel's send buffer takes the whole answer; the server then closes
    # the connection rather than keep a greenlet waiting for a next request.
    # The client, reading at last, gets every byte, the body's end, then EOF.
    api = Api(stalled_stack)
    text = ("Unread for now, every byte of it later. " * 8000)[:ANSWER_CHARS]
    big = api.create(text, mock={"tokens_per_second": 0, "ttft_ms": 0},
                     max_tokens=ANSWER_CHARS // 4 + 10)
    wait_until(lambda: api.generation(big["id"])["status"] == "completed", timeout=60,
               what="the big answer to finish")
    port = stalled_stack.webs[0].port
    assert port is not None
    with open_stalled(port, big["stream_url"], 1)[0] as sock:
        time.sleep(1.0)  # the server writes all of it into the kernel, unread
        assert sse_text(read_until_closed(sock, timeout=10)) == text
    # A client that reads its (small) answer keeps its connection for the next request.
    small = api.create("read at once")
    streamed_text(api, small)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(f"GET {small['stream_url']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            response = b""
            while not response.endswith(b"\r\n0\r\n\r\n"):
                chunk = sock.recv(65536)
                assert chunk, "the server closed a connection whose client reads"
                response += chunk
            assert sse_text(response) == "read at once"
    api.session.close()


def settled_rss(stack: Stack) -> int:
    """Web RSS once closed connections are gone and the heap trim has run."""
    wait_web_idle(stack)
    time.sleep(SETTLE_S)
    return web_rss(stack)
