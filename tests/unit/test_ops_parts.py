"""Pure parts of operations: log redaction and formats, metric series and buckets."""

from __future__ import annotations

import io
import json
import logging

import pytest

from spool import logs
from spool import metrics as m
from spool.redact import Redactor


def _capture(**options: object) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    logs.configure(stream=out, **options)  # type: ignore[arg-type]
    return logging.getLogger("spool.test"), out


@pytest.fixture(autouse=True)
def _restore_root() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    logs.configure(stream=io.StringIO())  # content logging back off
    root.handlers[:] = handlers
    root.setLevel(level)
    logs.reset()


def test_json_lines_carry_context_and_extras() -> None:
    log, out = _capture(log_format="json")
    logs.reset(request_id="r1")
    with logs.bound(generation_id="gen_x", tenant="acme"):
        log.info("hello %s", "world", extra={"status": 202})
    log.warning("after")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "hello world" and first["level"] == "info"
    assert first["request_id"] == "r1" and first["generation_id"] == "gen_x"
    assert first["tenant"] == "acme" and first["status"] == 202
    assert "generation_id" not in second and second["request_id"] == "r1"


def test_json_line_stamps_are_utc_to_the_millisecond_across_seconds() -> None:
    formatter = logs.JsonFormatter(Redactor())
    stamps = []
    for created in (1796403600.125, 1796403600.75, 1796403601.0, 1796403661.5):
        record = logging.LogRecord("spool.test", logging.INFO, "f", 1, "tick", None, None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        stamps.append(json.loads(formatter.format(record))["ts"])
    assert stamps == ["2026-12-04T17:00:00.125Z", "2026-12-04T17:00:00.750Z",
                      "2026-12-04T17:00:01.000Z", "2026-12-04T17:01:01.500Z"]


def test_secrets_are_redacted_by_value_and_by_shape() -> None:
    log, out = _capture(log_format="json", secrets=["configured-secret-123", None, "ab"])
    log.info("key configured-secret-123 and Bearer abc.def and /x?token=t0k3n&after=2")
    log.info("redis://user:hunter2@db:6379/0 sk-abcdefghijklmnop")
    # Upper case too: the patterns ignore case, and so must the test for whether to run them.
    log.info("AUTHORIZATION: BEARER UPPER.TOKEN with API_KEY=UPPERVALUE")
    text = out.getvalue()
    for leaked in ("configured-secret-123", "abc.def", "t0k3n", "hunter2", "sk-abcdefghijklmnop",
                   "UPPER.TOKEN", "UPPERVALUE"):
        assert leaked not in text
    assert "after=2" in text and "redis://user:[redacted]@db" in text


def test_text_format_and_content_switch() -> None:
    log, out = _capture(log_format="text", log_content=False)
    log.info("ended", extra={"answer": logs.content("secret answer")})
    assert "answer=<13 chars>" in out.getvalue() and "spool.test: ended" in out.getvalue()
    logs.configure(stream=out, log_format="text", log_content=True)
    assert logs.content("secret answer") == "secret answer"


def test_auto_format_is_text_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.wants_json("auto", io.StringIO())
    assert not logs.wants_json("auto", Tty())
    assert not logs.wants_json("text", io.StringIO())


def test_series_round_trip_with_awkward_label_values() -> None:
    name = m.series(m.GENERATIONS, ("mock", "a|b", 'q"uote'), "")
    assert m.parse_series(name) == ("spool_generations_total", ("mock", "a|b", 'q"uote'), "")


def test_histogram_buckets_are_per_bucket_and_inf_catches_the_rest() -> None:
    recorder = m.Recorder()
    for value in (0.01, 0.05, 0.07, 100.0):
        recorder.observe(m.TTFT, value, "mock")
    taken = recorder.take()
    assert taken[m.series(m.TTFT, ("mock",), "b0")] == 2  # <= 0.05
    assert taken[m.series(m.TTFT, ("mock",), "b1")] == 1  # <= 0.1
    assert taken[m.series(m.TTFT, ("mock",), f"b{len(m.TTFT_BUCKETS)}")] == 1  # +Inf
    assert taken[m.series(m.TTFT, ("mock",), "count")] == 4
    assert recorder.take() == {}
    recorder.give_back(taken)
    assert recorder.take() == taken


def test_observation_counts_once_and_frees_its_slot() -> None:
    recorder, in_flight = m.Recorder(), m.InFlight()
    obs = m.Observation("mock", "batch", 0.2, recorder, in_flight)
    assert in_flight.gauges(10)[m.series(m.SLOTS_IN_USE, ())] == 1
    obs.text_piece()
    obs.text_piece()
    obs.end("failed", "error", "timeout")
    obs.end("completed", "stop")
    obs.close()
    obs.close()
    taken = recorder.take()
    assert taken[m.series(m.GENERATIONS, ("mock", "failed", "error"))] == 1
    assert m.series(m.GENERATIONS, ("mock", "completed", "stop")) not in taken
    assert taken[m.series(m.PROVIDER_ERRORS, ("mock", "timeout"))] == 1
    assert taken[m.series(m.TTFT, ("mock",), "count")] == 1
    assert taken[m.series(m.INTER_TOKEN, ("mock",), "count")] == 1
    assert in_flight.gauges(10)[m.series(m.SLOTS_IN_USE, ())] == 0


@pytest.mark.parametrize("name", logs.HTTP_CLIENT_LOGGERS)
def test_http_client_request_lines_only_at_debug(name: str) -> None:
    _, out = _capture(log_format="json", level="INFO")
    client = logging.getLogger(name)
    client.info("HTTP Request: POST http://x/v1/chat/completions 200")
    client.warning("retrying")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["retrying"]
    _, out = _capture(log_format="json", level="DEBUG")
    client.info("HTTP Request: POST http://x/v1/chat/completions 200")
    assert "HTTP Request" in out.getvalue()
