"""Structured logs: one JSON object per line, with request, generation and tenant.

Context travels in a contextvar (per greenlet under gevent): the web binds
`request_id` and `tenant` per request, the worker binds `generation_id` per
run, and every line logged meanwhile carries them. Secrets never reach the
output: configured keys are replaced wherever they appear, and bearer
credentials and stream tokens are masked by pattern. Prompt and answer text
is only logged through `content()`, which shows a length unless
`SPOOL_LOG_CONTENT=1`.

`SPOOL_LOG_FORMAT=text` (or a TTY on stderr, when `auto`) prints the same
events as readable lines for development.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import orjson

from spool.clock import utc_second
from spool.linebuffer import LineBuffer
from spool.redact import Redactor

SPOOL_HANDLER = "_spool_handler"  # marks the root handler `configure` owns
# LogRecord attributes that are not user fields.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "spool_log_context", default=None
)
_show_content = False


def bind(**fields: Any) -> None:
    """Attach fields to every later line of this request or greenlet."""
    _context.set({**(_context.get() or {}), **fields})


def unbind(*names: str) -> None:
    """Detach fields (a worker greenlet finished one generation)."""
    _context.set({k: v for k, v in (_context.get() or {}).items() if k not in names})


def reset(**fields: Any) -> None:
    """Start a fresh context (a new request on a reused connection)."""
    _context.set(dict(fields))


def current() -> dict[str, Any]:
    """The bound fields."""
    return dict(_context.get() or {})


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Bind fields for the duration of a block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def content(text: str) -> str:
    """Prompt or answer text as it may be logged: itself only with SPOOL_LOG_CONTENT=1."""
    return text if _show_content else f"<{len(text)} chars>"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The bound fields, then the record's extras (read straight off the record)."""
    fields = dict(_context.get() or ())
    fields.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
    return fields


def _stamp(created: float) -> str:
    """A line's `ts`: UTC to the millisecond, as `logging` counts them."""
    return f"{utc_second(int(created))}.{int((created - int(created)) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, bound fields, extras."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        text = orjson.dumps(line, default=str).decode("utf-8")
        return self.redact(text)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal: time, level, logger, event, key=value."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        pairs = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        text = f"{clock} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if pairs:
            text += f"  [{pairs}]"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return self.redact(text)


class SpoolHandler(logging.StreamHandler[IO[str]]):
    """The root handler `configure` installs: lines as they come, and a
    buffer for request lines (`log_buffered`) written before any of them."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self.lines = LineBuffer(stream, self.lock)

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines):
            self.lines.flush()  # what was logged before this line is written before it
        super().emit(record)

    def flush(self) -> None:
        self.lines.flush()
        super().flush()


def _buffered_handler(logger: logging.Logger, level: int) -> SpoolHandler | None:
    """Spool's JSON handler when it alone would print `logger`'s line at `level`."""
    root = logging.getLogger()
    handlers = root.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if not (isinstance(handler, SpoolHandler) and isinstance(handler.formatter, JsonFormatter)
            and level >= handler.level and not handler.filters):
        return None
    node: logging.Logger | None = logger
    while node is not None and node is not root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    return handler


def log_buffered(logger: logging.Logger, level: int, event: str, fields: dict[str, Any]) -> None:
    """`logger.log(level, event, extra=fields)`, the same JSON line, written in a batch.

    For lines every request writes: the line is built straight from the
    bound context and `fields` (what JsonFormatter prints for that record)
    and waits in the handler's LineBuffer instead of paying a LogRecord, a
    lock and a write of its own. Any other set-up (the text format, more
    handlers on the root logger, a logger with its own) logs it as usual.
    """
    if not logger.isEnabledFor(level):
        return
    handler = _buffered_handler(logger, level)
    if handler is None:
        logger.log(level, event, extra=fields)
        return
    formatter = handler.formatter
    assert isinstance(formatter, JsonFormatter)
    line: dict[str, Any] = {
        "ts": _stamp(time.time()),
        "level": logging.getLevelName(level).lower(), "logger": logger.name, "event": event,
    }
    line.update(_context.get() or ())
    line.update(fields)
    handler.lines.add(formatter.redact(orjson.dumps(line, default=str).decode("utf-8")))


def wants_json(log_format: str, stream: IO[str]) -> bool:
    """`json`, `text`, or `auto` (JSON unless the stream is a terminal)."""
    if log_format == "auto":
        return not (hasattr(stream, "isatty") and stream.isatty())
    return log_format == "json"


# The SDKs' HTTP clients log one INFO line per request ("HTTP Request: POST
# …/chat/completions 200"), which the worker's own "generation ended" line
# already covers; formatting and writing it was a fifth of the CPU of opening
# a provider stream (py-spy, 600 one-token streams through `openai`). They
# still log at DEBUG level, and their warnings always.
HTTP_CLIENT_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")


def configure(*, log_format: str = "auto", log_content: bool = False,
              secrets: Iterable[str | None] = (), level: str = "INFO",
              stream: IO[str] | None = None) -> None:
    """Route every logger through Spool's formatter (a root handler; idempotent).

    Only a handler installed here before is replaced, so handlers that others
    put on the root logger (pytest's capture, for one) keep working.
    """
    global _show_content
    _show_content = log_content
    out = stream or sys.stderr
    redact = Redactor(secrets)
    handler = SpoolHandler(out)
    handler.setFormatter(JsonFormatter(redact) if wants_json(log_format, out)
                         else TextFormatter(redact))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, SPOOL_HANDLER, False):
            root.removeHandler(old)
    setattr(handler, SPOOL_HANDLER, True)
    root.addHandler(handler)
    # No formatter here prints the caller's file and line or the thread: not
    # collecting them (a stack walk per line) is logging's documented saving.
    # The process id stays: gunicorn's own log lines print it.
    logging._srcfile = None
    logging.logThreads = False
    root.setLevel(level.upper())
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


def configure_from_settings(settings: Any, level: str = "INFO") -> None:
    """`configure` with a Settings object's format, content flag and secrets."""
    secrets = [settings.secret_key, settings.openai_api_key, settings.anthropic_api_key,
               *settings.api_keys,
               *(config.api_key for config in getattr(settings, "providers", {}).values())]
    configure(log_format=settings.log_format, log_content=settings.log_content,
              secrets=secrets, level=level)
