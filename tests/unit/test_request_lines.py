"""Buffered log lines: the same JSON as `logging` prints, written in batches, in order."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from spool import logs
from spool.linebuffer import LineBuffer

FIELDS = {"method": "POST", "path": "/v1/generations", "status": 202, "duration_ms": 1.5,
          "streaming": False}


class CountingStream(io.StringIO):
    """A stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logs.reset()


def _configured(stream: io.StringIO, **options: object) -> logging.Logger:
    logs.configure(stream=stream, **options)  # type: ignore[arg-type]
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logs.SpoolHandler)]
    return logging.getLogger("spool.web")


def test_a_buffered_line_is_the_line_logging_prints() -> None:
    out = io.StringIO()
    log = _configured(out, log_format="json", secrets=["configured-secret-123"])
    logs.reset(request_id="r1")
    with logs.bound(tenant="acme"):
        logs.log_buffered(log, logging.INFO, "request",
                          {**FIELDS, "path": "/x/configured-secret-123"})
        log.info("request", extra={**FIELDS, "path": "/x/configured-secret-123"})
    buffered, logged = (json.loads(line) for line in out.getvalue().splitlines())
    for line in (buffered, logged):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.pop("ts"))
    assert buffered == logged
    assert list(buffered) == ["level", "logger", "event", "request_id", "tenant", *FIELDS]
    assert buffered["path"] == "/x/[redacted]"


def test_buffered_lines_wait_and_go_out_in_one_write() -> None:
    out = CountingStream()
    buffer = LineBuffer(out, flush_s=0.1)
    for n in range(5):
        buffer.add(f"line {n}")
    assert out.writes == 0 and len(buffer) == 5
    deadline = time.monotonic() + 5
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.writes == 1
    assert out.getvalue() == "".join(f"line {n}\n" for n in range(5))


def test_a_full_buffer_is_written_at_once() -> None:
    out = CountingStream()
    buffer = LineBuffer(out, flush_s=60, buffer_bytes=100)
    buffer.add("x" * 60)
    assert out.writes == 0
    buffer.add("y" * 60)
    assert out.getvalue() == "x" * 60 + "\n" + "y" * 60 + "\n" and len(buffer) == 0


def test_any_other_line_writes_the_buffered_ones_first() -> None:
    out = io.StringIO()
    log = _configured(out, log_format="json")
    logs.log_buffered(log, logging.INFO, "request", FIELDS)
    log.warning("after the request")
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["request", "after the request"]


def test_levels_are_respected() -> None:
    out = io.StringIO()
    log = _configured(out, log_format="json")
    logs.log_buffered(log, logging.DEBUG, "request", FIELDS)
    logging.getLogger().handlers[0].flush()
    assert out.getvalue() == ""


class Collecting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("setup", ["another root handler", "text format"])
def test_any_other_set_up_logs_it_as_usual(setup: str) -> None:
    out = io.StringIO()
    log = _configured(out, log_format="text" if setup == "text format" else "json")
    other = Collecting()
    if setup == "another root handler":
        logging.getLogger().addHandler(other)
    logs.log_buffered(log, logging.INFO, "request", FIELDS)
    assert "request" in out.getvalue()  # written at once, not buffered
    if setup == "another root handler":
        assert [r.getMessage() for r in other.records] == ["request"]
        assert other.records[0].status == 202  # type: ignore[attr-defined]


def test_a_process_that_exits_writes_what_waits() -> None:
    code = ("import logging, sys; from spool import logs; "
            "logs.configure(log_format='json'); "
            "logs.log_buffered(logging.getLogger('spool.web'), logging.INFO, 'request', "
            "{'status': 202}); sys.exit(0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, check=True)
    assert json.loads(done.stderr)["status"] == 202
