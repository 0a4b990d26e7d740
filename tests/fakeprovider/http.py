"""Just enough HTTP/1.1 for the fake provider: read one request, write a head."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
RECV_BYTES = 65536


@dataclass
class Request:
    """One parsed request; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or its text when it is not JSON."""
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return self.body.decode("utf-8", "replace")


def read_request(sock: socket.socket) -> Request | None:
    """Read one request (Content-Length bodies only); None if the client sent nothing."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(RECV_BYTES)
        if not data or len(buf) > MAX_HEAD_BYTES:
            return None
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = min(int(headers.get("content-length", "0") or 0), MAX_BODY_BYTES)
    while len(rest) < length:
        data = sock.recv(RECV_BYTES)
        if not data:
            break
        rest += data
    return Request(method, target.split("?", 1)[0], headers, rest[:length])


def response_head(status: int, headers: dict[str, str]) -> bytes:
    """Status line and headers, ending with a blank line (connections stay open)."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Overloaded" if status == 529 else "Error"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
