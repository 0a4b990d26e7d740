"""The provider body read below httpx (worker.providers._rawbody), against h11 as reference."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import h11
import pytest

from worker.providers._rawbody import ChunkDecoder, read_body

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n")


def chunked(pieces: list[bytes], trailer: bytes = b"") -> bytes:
    """A chunked body of `pieces`, in the shapes servers send (case, extensions, OWS)."""
    framed = []
    for i, piece in enumerate(pieces):
        size = b"%x" % len(piece) if i % 3 else b"%X" % len(piece)
        extension = b";name=value" if i % 4 == 1 else b"  " if i % 4 == 2 else b""
        framed.append(size + extension + b"\r\n" + piece + b"\r\n")
    return b"".join(framed) + b"0\r\n" + trailer + b"\r\n"


def splits(data: bytes, rng: random.Random) -> Iterator[bytes]:
    """`data` cut at random places, single bytes included."""
    at = 0
    while at < len(data):
        step = rng.choice((1, 2, 3, 7, 64, 1000))
        yield data[at:at + step]
        at += step


def decode(data_parts: Iterator[bytes]) -> tuple[bytes, bytes]:
    decoder = ChunkDecoder()
    payload, rest = [], None
    for part in data_parts:
        if rest is not None:
            rest += part
            continue
        got, rest = decoder.feed(part)
        payload.append(got)
    assert rest is not None, "the terminal chunk was not found"
    return b"".join(payload), rest


def h11_payload(body: bytes) -> bytes:
    """What h11 makes of the same bytes (the reference)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(HEAD + body)
    out = []
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            out.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(out)
        elif event is h11.NEED_DATA:
            raise AssertionError("h11 wanted more")


@pytest.mark.parametrize("seed", range(40))
def test_any_split_decodes_as_h11_does(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 5, 150, 3000))))
              for _ in range(rng.randint(1, 12))]
    trailer = b"x-done: 1\r\n" if seed % 2 else b""
    body = chunked(pieces, trailer)
    payload, rest = decode(splits(body, rng))
    assert payload == b"".join(pieces) == h11_payload(body)
    assert rest == b"0\r\n" + trailer + b"\r\n"


def test_the_terminal_chunk_goes_back_whole_with_what_follows() -> None:
    body = chunked([b"abc"], trailer=b"a: b\r\n")
    payload, rest = ChunkDecoder().feed(body)
    assert payload == b"abc"
    assert rest == b"0\r\na: b\r\n\r\n"


@pytest.mark.parametrize("seed", range(20))
def test_one_chunk_per_read_decodes_as_h11_does(seed: int) -> None:
    """A live stream's usual read: exactly one chunk (any size-line shape)."""
    rng = random.Random(seed)
    pieces = [b"data: {}\r\n\r\n", b"\r\n", b"x" * rng.choice((1, 15, 16, 4000))]
    pieces += [bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 40))))]
    body = chunked(pieces)
    reads = [body[:body.index(b"\r\n0\r\n") + 2]]  # every chunk but the terminal one
    decoder, payload = ChunkDecoder(), []
    at = 0
    for piece in pieces:  # one read per chunk
        line_end = reads[0].index(b"\r\n", at)
        end = line_end + 2 + len(piece) + 2
        got, rest = decoder.feed(reads[0][at:end])
        assert (got, rest) == (piece, None)
        payload.append(got)
        at = end
    assert decoder.feed(b"0\r\n\r\n") == (b"", b"0\r\n\r\n")
    assert b"".join(payload) == h11_payload(body)


@pytest.mark.parametrize(("read", "payload"), [
    (b"3\r\nabc\r\n4\r\nde", b"abcde"),  # one chunk and part of the next
    (b"3\r\nab", b"ab"),  # part of one
    (b"3\r\nabc\r", b"abc"),  # all but the last byte
])
def test_a_read_that_is_not_one_whole_chunk(read: bytes, payload: bytes) -> None:
    got, rest = ChunkDecoder().feed(read)
    assert (got, rest) == (payload, None)


@pytest.mark.parametrize("bad", [
    b"3\r\nabcXY",  # the size of one chunk, but not its CRLF
    b"\r\nabc\r\n",  # no size line at all
])
def test_a_malformed_chunk_the_size_of_one_is_refused(bad: bytes) -> None:
    with pytest.raises(h11.RemoteProtocolError):
        ChunkDecoder().feed(bad)


@pytest.mark.parametrize("bad", [
    b"zz\r\nab\r\n",  # not hex
    b"3\r\nabcX\r\n",  # no CRLF after the data
    b"3\r\nabc\rX",  # half a CRLF
    b";x\r\nab\r\n",  # no size
    b"123456789012345678901\r\n",  # more than 20 digits
    b" 3\r\nabc\r\n",  # leading space
])
def test_malformed_framing_is_a_protocol_error(bad: bytes) -> None:
    with pytest.raises(h11.RemoteProtocolError):
        ChunkDecoder().feed(bad)
    with pytest.raises(h11.RemoteProtocolError):  # and h11 agrees
        h11_payload(bad + b"0\r\n\r\n")


def test_a_size_line_that_never_ends_is_refused() -> None:
    decoder = ChunkDecoder()
    with pytest.raises(h11.RemoteProtocolError):
        for _ in range(10):
            decoder.feed(b"1" + b";" + b"e" * 1000)


def response_over_socket(parts: list[bytes]) -> tuple[h11.Connection, socket.socket,
                                                       socket.socket]:
    """An h11 client connection past the response head, its body still on the socket."""
    ours, theirs = socket.socketpair()
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    for part in parts:
        theirs.sendall(part)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(ours.recv(len(HEAD)))  # the head only, as httpcore leaves it
        else:
            assert isinstance(event, h11.Response)
            return conn, ours, theirs


def test_the_body_is_read_and_h11_ends_the_message() -> None:
    pieces = [b"data: %d\n\n" % i for i in range(50)]
    body = chunked(pieces, trailer=b"x-end: yes\r\n")
    conn, ours, theirs = response_over_socket([HEAD, body])
    ours.settimeout(30.0)
    got = b"".join(read_body(conn, ours))
    assert got == b"".join(pieces)
    assert ours.gettimeout() is None  # no timer per read: the callers' watchdogs time it
    assert conn.their_state is h11.DONE and conn.our_state is h11.DONE
    conn.start_next_cycle()  # the connection can serve the next request
    theirs.close()
    ours.close()


def test_bytes_h11_already_buffered_are_not_lost() -> None:
    body = chunked([b"one", b"two", b"three"])
    conn, ours, theirs = response_over_socket([HEAD])
    conn.receive_data(body[:9])  # httpcore read part of the body with the head
    theirs.sendall(body[9:])
    assert b"".join(read_body(conn, ours)) == b"onetwothree"
    assert conn.their_state is h11.DONE
    theirs.close()
    ours.close()


def test_a_length_delimited_body_is_left_to_h11() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
    conn, ours, theirs = response_over_socket([head, b"hello"])
    assert b"".join(read_body(conn, ours)) == b"hello"
    assert conn.their_state is h11.DONE
    theirs.close()
    ours.close()


@pytest.mark.parametrize("cut", [len(HEAD) + 2, len(HEAD) + 9, -3, -1])
def test_a_connection_closed_mid_body_is_an_error(cut: int) -> None:
    whole = HEAD + chunked([b"abcdef", b"ghij"])
    conn, ours, theirs = response_over_socket([whole[:cut]])
    theirs.close()
    with pytest.raises(h11.RemoteProtocolError):
        for _ in read_body(conn, ours):
            pass
    ours.close()


def test_a_length_delimited_body_cut_short_is_an_error() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
    conn, ours, theirs = response_over_socket([head, b"hello"])
    theirs.close()
    with pytest.raises(h11.RemoteProtocolError):
        for _ in read_body(conn, ours):
            pass
    ours.close()
