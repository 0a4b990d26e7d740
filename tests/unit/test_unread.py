"""`should_close_unread` over a real loopback TCP connection."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from webapp.unread import UNREAD_LIMIT_BYTES, should_close_unread


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, client side) of one loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server, _ = listener.accept()
    with server, client:
        yield server, client


def fill(sock: socket.socket, limit: int) -> int:
    """Write until the kernel takes no more (or `limit` bytes); how much went."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent < limit:
            sent += sock.send(b"x" * 65536)
    except BlockingIOError:
        pass
    return sent


def test_a_small_answer_keeps_the_connection(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    server.sendall(b"a small answer")
    assert not should_close_unread(server)
    assert client.recv(100) == b"a small answer"


def test_an_unread_answer_closes_it_unless_the_client_sent_more(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    assert fill(server, 64 * UNREAD_LIMIT_BYTES) > UNREAD_LIMIT_BYTES
    assert should_close_unread(server)
    # Input waiting to be read: a close now would reset the connection and
    # drop what is queued for the client, so it is kept.
    client.sendall(b"GET / HTTP/1.1\r\n")
    server.setblocking(True)
    server.settimeout(5)
    assert server.recv(1, socket.MSG_PEEK) == b"G"
    assert not should_close_unread(server)


def test_a_socket_it_cannot_ask_is_kept() -> None:
    left, right = socket.socketpair()  # AF_UNIX: no TCP send queue to read
    with left, right:
        left.sendall(b"x" * 1000)
        assert not should_close_unread(left)
