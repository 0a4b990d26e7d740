"""The retry / fallback / timeout policy, run as the worker runs it (gevent-patched subprocess).

Each case starts `tests.fakeprovider.drive`, which patches gevent, calls
`resilient.open_stream` with settings from the environment, and reports the
pieces, notices and error it saw; the fake server's request log shows what
actually went over the wire.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from spool.settings import ConfigError, Settings
from tests.fakeprovider import Driver, FakeProvider, matching, scenario
from worker.providers.base import ProviderError
from worker.providers.resilient import RetryPolicy, provider_chain

ATTEMPTS = 3
DISCONNECT_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    server = FakeProvider()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    process = Driver()
    yield process
    process.stop()


@pytest.fixture(params=["openai", "anthropic"])
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def env_for(fake: FakeProvider, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake.openai_base_url, "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
        "OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "ak-test",
        "SPOOL_RETRY_ATTEMPTS": str(ATTEMPTS), "SPOOL_RETRY_BASE_S": "0.05",
        "SPOOL_RETRY_MAX_S": "2", "SPOOL_FIRST_TOKEN_TIMEOUT_S": "5",
        "SPOOL_IDLE_TIMEOUT_S": "5", **extra,
    }


@pytest.fixture
def run(fake: FakeProvider, driver: Driver) -> Any:
    """Drive one request; return the report and this request's records on the fake."""

    def runner(vendor: str, spec: dict[str, Any], close_after: int | None = None,
               **env: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        marker = uuid.uuid4().hex
        request = {"messages": [{"role": "user", "content": scenario(key=marker, **spec)}],
                   "max_tokens": 64}
        report = driver.run(vendor, request, env_for(fake, **env), close_after=close_after)
        return report, matching(fake.requests(), marker)

    return runner


def text_of(report: dict[str, Any]) -> str:
    return "".join(p["text"] for p in report["pieces"] if p["kind"] == "TextDelta")


def kinds(report: dict[str, Any]) -> list[str]:
    return [p["kind"] for p in report["pieces"]]


def test_429_with_retry_after_is_retried_to_success(run: Any, vendor: str) -> None:
    report, records = run(vendor, {"text": "made it", "fault": "429", "fail_times": 1,
                                         "retry_after_s": 0.6})
    assert report["error"] is None
    assert text_of(report) == "made it" and kinds(report)[-1] == "Finish"
    assert len(records) == 2
    assert records[1]["started_at"] - records[0]["finished_at"] >= 0.6  # retry-after honoured
    [notice] = report["notices"]
    assert "429" in notice and "retrying" in notice and "attempt 2 of 3" in notice


def test_500_is_retried_a_bounded_number_of_times(run: Any, vendor: str) -> None:
    report, records = run(vendor, {"text": "never", "fault": "500"})
    assert report["error"]["type"] == "provider_error"
    assert report["error"]["status"] == 500 and report["error"]["retryable"] is True
    assert report["pieces"] == []
    assert len(records) == ATTEMPTS
    assert len(report["notices"]) == ATTEMPTS - 1


def test_overloaded_529_then_success(run: Any, vendor: str) -> None:
    report, records = run(vendor, {"text": "ok", "fault": "529", "fail_times": 2})
    assert report["error"] is None and text_of(report) == "ok"
    assert len(records) == 3 and len(report["notices"]) == 2


@pytest.mark.parametrize("status", ["400", "401", "403", "404"])
def test_client_errors_are_not_retried(run: Any, vendor: str, status: str) -> None:
    report, records = run(vendor, {"text": "never", "fault": status})
    assert report["error"]["status"] == int(status) and report["error"]["retryable"] is False
    assert len(records) == 1 and report["notices"] == []


def test_retry_after_beyond_the_limit_is_not_waited_for(run: Any, vendor: str) -> None:
    report, records = run(vendor, {"fault": "429", "retry_after_s": 30})
    assert report["error"]["type"] == "rate_limited"
    assert len(records) == 1 and report["elapsed_s"] < 10


def test_in_band_error_before_output_is_retried(run: Any, vendor: str) -> None:
    # Anthropic sends message_start (with usage) first; that alone is not output.
    report, records = run(vendor, {"text": "second time", "fault": "inband_error",
                                         "fault_after_tokens": 0, "fail_times": 1})
    assert report["error"] is None and text_of(report) == "second time"
    assert len(records) == 2 and len(report["notices"]) == 1


def test_drop_after_output_is_an_error_and_not_retried(run: Any, vendor: str) -> None:
    report, records = run(vendor, {"text": "abcdefgh", "chunk_chars": 2, "fault": "drop",
                                         "fault_after_tokens": 2})
    assert text_of(report) == "abcd"
    assert report["error"]["type"] == "provider_error" and report["error"]["retryable"] is True
    assert len(records) == 1 and report["notices"] == []


def test_truncation_after_output_ends_without_finish(run: Any, vendor: str) -> None:
    report, records = run(vendor, {"text": "abcdefgh", "chunk_chars": 2,
                                         "fault": "truncate", "fault_after_tokens": 1})
    assert report["error"] is None and text_of(report) == "ab"
    assert "Finish" not in kinds(report) and len(records) == 1


def test_stall_after_output_hits_the_idle_timeout(run: Any, vendor: str) -> None:
    report, records = run(vendor, {"text": "abcdefgh", "chunk_chars": 2,
                                         "fault": "stall", "fault_after_tokens": 1},
                          SPOOL_IDLE_TIMEOUT_S="0.7")
    assert text_of(report) == "ab"
    assert report["error"]["type"] == "timeout" and report["error"]["retryable"] is True
    assert "0.7" in report["error"]["message"]
    gap = report["elapsed_s"] - report["pieces"][-1]["t"]
    assert gap >= 0.7
    [record] = records
    assert record["client_disconnected"] is True  # the stalled connection was closed


def test_stall_before_output_hits_the_first_token_timeout(run: Any, vendor: str) -> None:
    report, records = run(vendor, {"text": "abc", "fault": "stall"},
                          SPOOL_FIRST_TOKEN_TIMEOUT_S="0.8", SPOOL_IDLE_TIMEOUT_S="30")
    assert report["pieces"] == []
    assert report["error"]["type"] == "timeout" and "0.8" in report["error"]["message"]
    assert len(records) == 1 and records[0]["client_disconnected"] is True


def test_slow_first_token_within_the_limit_is_fine(run: Any, vendor: str) -> None:
    report, _ = run(vendor, {"text": "patience", "ttft_ms": 600},
                    SPOOL_FIRST_TOKEN_TIMEOUT_S="3", SPOOL_IDLE_TIMEOUT_S="0.3")
    assert report["error"] is None and text_of(report) == "patience"


def test_a_steady_answer_longer_than_the_idle_timeout_is_fine(run: Any, vendor: str) -> None:
    # 20 pieces, 20 a second: 1 s of answer, never 0.3 s of silence (the idle timer is
    # per gap; a restarted gevent.Timeout once kept its first deadline and cut it).
    text = "abcdefghij" * 2
    report, _ = run(vendor, {"text": text, "chunk_chars": 1, "tps": 20, "ttft_ms": 0},
                    SPOOL_IDLE_TIMEOUT_S="0.3")
    assert report["error"] is None and text_of(report) == text


def test_a_body_that_never_ends_after_the_answer_is_still_done(run: Any, vendor: str) -> None:
    report, records = run(vendor, {"text": "complete", "fault": "linger"},
                          SPOOL_IDLE_TIMEOUT_S="30")
    assert report["error"] is None and text_of(report) == "complete"
    assert kinds(report)[-1] == "Finish"
    assert report["elapsed_s"] < 10  # bounded by the drain limit, not the idle timeout
    assert records[0]["client_disconnected"] is True  # given up on, so hung up


def test_close_disconnects_upstream(run: Any, fake: FakeProvider, vendor: str) -> None:
    report, records = run(vendor, {"tokens": 400, "tps": 20}, close_after=2)
    assert report["error"] is None and report["closed_at"] is not None
    deadline = time.monotonic() + 5
    while not records[0]["client_disconnected"] and time.monotonic() < deadline:
        time.sleep(0.05)
        records = [r for r in fake.requests() if r["id"] == records[0]["id"]]
    assert records[0]["client_disconnected"] is True
    assert records[0]["disconnected_at"] - report["closed_at"] < DISCONNECT_WITHIN_S


@pytest.mark.parametrize(("first", "second"), [("openai", "anthropic"),
                                               ("anthropic", "openai")])
def test_fallback_after_pre_output_failure(run: Any, first: str, second: str) -> None:
    report, records = run(first, {"text": "from the fallback", "fault": "500",
                                        "fail_times": ATTEMPTS},
                          SPOOL_FALLBACK_PROVIDERS=second)
    assert report["error"] is None and text_of(report) == "from the fallback"
    assert report["provider"] == second
    paths = [r["path"] for r in records]
    first_path = "/v1/chat/completions" if first == "openai" else "/v1/messages"
    assert paths[:ATTEMPTS] == [first_path] * ATTEMPTS and len(paths) == ATTEMPTS + 1
    assert paths[-1] != first_path
    assert f"falling back to {second}" in report["notices"][-1]
    # the fallback uses its own default model, not the first provider's
    assert records[-1]["body"]["model"] == report["model"]


def test_no_fallback_after_output(run: Any) -> None:
    report, records = run("openai", {"text": "abcdef", "chunk_chars": 2, "fault": "drop",
                                           "fault_after_tokens": 1},
                          SPOOL_FALLBACK_PROVIDERS="anthropic")
    assert text_of(report) == "ab" and report["error"] is not None
    assert len(records) == 1 and report["provider"] == "openai"


def test_whole_chain_failing_reports_the_last_error(run: Any) -> None:
    report, records = run("openai", {"fault": "401"},
                          SPOOL_FALLBACK_PROVIDERS="anthropic")
    assert report["error"]["status"] == 401
    assert [r["path"] for r in records] == ["/v1/chat/completions", "/v1/messages"]
    assert report["notices"] == [report["notices"][0]] and "falling back" in report["notices"][0]


def test_unconfigured_fallback_is_skipped(run: Any) -> None:
    report, records = run("openai", {"fault": "401"}, SPOOL_FALLBACK_PROVIDERS="anthropic",
                          ANTHROPIC_BASE_URL="", ANTHROPIC_API_KEY="")
    assert report["error"]["status"] == 401 and report["notices"] == []
    assert [r["path"] for r in records] == ["/v1/chat/completions"]


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(attempts=4, base_s=1.0, max_s=5.0)
    for attempt, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0)]:
        for _ in range(20):
            delay = policy.delay(attempt, None)
            assert delay is not None and nominal / 2 <= delay <= nominal
    assert policy.delay(1, 3.0) == 3.0  # the provider's hint wins when longer
    assert policy.delay(1, 6.0) is None  # too long to wait here
    assert Settings.from_env({"SPOOL_RETRY_ATTEMPTS": "5", "SPOOL_RETRY_BASE_S": "0.1",
                              "SPOOL_RETRY_MAX_S": "1"}).retry == RetryPolicy(5, 0.1, 1.0)
    # Issue 17: a bad retry value stops startup like any other variable (it used to be
    # ignored with a warning, per stream).
    with pytest.raises(ConfigError, match=r"^SPOOL_RETRY_BASE_S must be a number"):
        Settings.from_env({"SPOOL_RETRY_BASE_S": "nope"})


def test_retry_policy_decisions() -> None:
    policy = RetryPolicy(attempts=3)
    busy = ProviderError("provider_error", "x", retryable=True, status=503)
    assert policy.should_retry(busy, 1) and policy.should_retry(busy, 2)
    assert not policy.should_retry(busy, 3)
    assert not policy.should_retry(ProviderError("timeout", "x", retryable=True), 1)
    assert not policy.should_retry(ProviderError("provider_error", "x", status=401), 1)


def test_provider_chain() -> None:
    assert provider_chain("openai", ("anthropic", "openai", "mock")) == [
        "openai", "anthropic", "mock"]
    assert provider_chain("mock", ()) == ["mock"]
    # an unconfigured fallback (no key, no base URL) is skipped; the first choice never is
    assert provider_chain("openai", ("anthropic", "mock"), ["mock", "openai"]) == [
        "openai", "mock"]
    assert provider_chain("anthropic", ("openai",), ["mock"]) == ["anthropic"]
