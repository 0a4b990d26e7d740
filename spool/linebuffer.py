"""Log lines written in batches: one write for many lines, at most a moment late.

Like nginx's `access_log ... buffer=64k flush=...`: a line waits in memory
until the buffer fills, a flush is due, or its owner flushes it (Spool's
log handler does before every other line, and `logging` flushes every
handler at exit; a SIGKILL loses at most FLUSH_S of lines). Spool uses it
for request lines, the one line every request writes: sending each through
`logging` alone (a LogRecord, the formatter, the handler's lock, a
`write(2)` and a flush) cost ~8 % of the web process's POST rate (INFO
against WARNING, same host, alternating runs)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import IO, Any

FLUSH_S = 0.2  # a buffered line reaches the output at most this late
BUFFER_BYTES = 64 * 1024  # or sooner, once this much waits


class LineBuffer:
    """Lines for one stream, written together; thread- and greenlet-safe."""

    def __init__(self, stream: IO[str], lock: AbstractContextManager[Any] | None = None,
                 flush_s: float = FLUSH_S, buffer_bytes: int = BUFFER_BYTES) -> None:
        self.stream = stream
        self.lock = lock or threading.RLock()  # the stream's other writers hold it too
        self.flush_s = flush_s
        self.buffer_bytes = buffer_bytes
        self._lines: list[str] = []
        self._size = 0
        self._timer: threading.Timer | None = None

    def add(self, line: str) -> None:
        """Queue one line (without its newline)."""
        with self.lock:
            self._lines.append(line)
            self._size += len(line) + 1
            if self._size >= self.buffer_bytes:
                self.flush()
            elif self._timer is None:
                # Under gevent's patching the timer is a greenlet; elsewhere a thread.
                timer = threading.Timer(self.flush_s, self.flush)
                timer.daemon = True
                self._timer = timer
                timer.start()

    def flush(self) -> None:
        """Write every queued line now (one write)."""
        with self.lock:
            lines, self._lines, self._size = self._lines, [], 0
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            if not lines:
                return
            lines.append("")
            try:
                self.stream.write("\n".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken stream: logging never takes the process down

    def __len__(self) -> int:
        return len(self._lines)
