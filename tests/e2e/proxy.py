"""A loopback TCP proxy that can cut every connection on demand.

It stands between Chromium and the web process so a test can do to a live
stream what a train tunnel or a closed laptop lid does: drop the TCP
connection mid-answer, and optionally refuse new connections for a while.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

BUFFER_BYTES = 64 * 1024
ACCEPT_BACKLOG = 64


class CuttableProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<target_port>, byte for byte."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=ACCEPT_BACKLOG)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._down = False
        self._closed = False
        self.connections = 0  # accepted while up: how many times clients (re)connected
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL of the proxied web process."""
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Drop every open connection at once; return how many were dropped."""
        with self._lock:
            victims = list(self._live)
            self._live.clear()
        for sock in victims:
            _hard_close(sock)
        return len(victims)

    def set_down(self, down: bool) -> None:
        """While down, new connections are accepted and closed at once (a dead network)."""
        self._down = down

    def close(self) -> None:
        """Stop accepting and drop everything."""
        self._closed = True
        _hard_close(self._listener)
        self.cut()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            if self._down:
                _hard_close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                _hard_close(client)
                continue
            with self._lock:
                self._live.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(BUFFER_BYTES):
                dst.sendall(chunk)
        except OSError:
            pass  # the other side (or cut()) closed it
        finally:
            with self._lock:
                self._live.discard(src)
                self._live.discard(dst)
            _hard_close(src)
            _hard_close(dst)


def _hard_close(sock: socket.socket) -> None:
    """Close with a reset, not a polite FIN: that is what a dropped network looks like."""
    with contextlib.suppress(OSError):
        # SO_LINGER (on, 0 s) turns close() into an RST.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        # SHUT_RD sends nothing but wakes the pump thread blocked in recv().
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()
