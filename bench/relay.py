"""Relay scenarios: concurrent streams, many readers, a slow reader — Spool beside the peers."""

from __future__ import annotations

from bench import systems
from bench.harness import add_floor_deltas, measure
from bench.loadclient import Spec
from bench.registry import Context, Row, scenario
from bench.systems import System

ARRIVAL_WINDOW_S = 2.0
TTFT_MS = 200
STREAM_CHARS = 400  # 100 tokens of 4 characters
# (n, tokens per second): the goals are 300 streams at 50 tok/s and 1,000 at 20 tok/s.
STREAM_LOADS = ((100, 50.0), (300, 50.0), (1000, 20.0))
QUICK_STREAM_LOADS = ((50, 50.0),)
MANY_READERS = 1000
SLOW_READER_CHARS = 120_000  # 30,000 tokens: under Spool's max_tokens limit (32,768)
SLOW_READERS_NORMAL = 9
SLOW_PAUSE_S = 8.0  # the slow reader reads nothing for this long, then catches up


def _systems(ctx: Context, names: tuple[System, ...]) -> list[System]:
    """The systems `--systems` asked for that this checkout can run (the floor always)."""
    wanted = ctx.systems
    return [s for s in names if systems.available(s)
            and (wanted is None or s.name in wanted or s is systems.FLOOR)]


def _timeout(chars: int, tps: float, ttft_ms: float) -> float:
    """Per-stream deadline: three times the nominal duration, plus 5 s.

    A stream not finished by then counts as an error (its text as lost), so a
    collapsing system is measured as such instead of stretching the run.
    """
    nominal = ttft_ms / 1000 + ((chars / 4) / tps if tps else 5.0)
    return nominal * 3 + 5.0


@scenario("relay", "streams")
def streams(ctx: Context) -> list[Row]:
    """N concurrent generations, each read by one client (TTFT 200 ms, arrivals over 2 s)."""
    rows: list[Row] = []
    for n, tps in QUICK_STREAM_LOADS if ctx.quick else STREAM_LOADS:
        spec = Spec(host="127.0.0.1", port=0, mode="", n=n, window_s=ARRIVAL_WINDOW_S,
                    ttft_ms=TTFT_MS, tps=tps, chars=STREAM_CHARS,
                    timeout_s=_timeout(STREAM_CHARS, tps, TTFT_MS))
        for system in _systems(ctx, systems.ALL):
            rows.append(measure(ctx, system, f"streams@{tps:g}tps", spec))
    add_floor_deltas(rows)
    return rows


@scenario("relay", "many_readers")
def many_readers(ctx: Context) -> list[Row]:
    """One generation read by 1,000 clients; they connect before its first token.

    The idle stretch before the first token gives RSS per idle SSE connection.
    """
    n = 50 if ctx.quick else MANY_READERS
    ttft_ms = int(ARRIVAL_WINDOW_S * 1000 + 2500)
    spec = Spec(host="127.0.0.1", port=0, mode="", n=n, window_s=ARRIVAL_WINDOW_S,
                ttft_ms=ttft_ms, tps=50.0, chars=STREAM_CHARS, shared=True,
                timeout_s=_timeout(STREAM_CHARS, 50.0, ttft_ms))
    chosen = (systems.FLOOR, systems.FLASKSSE, systems.SPOOL_MOCK)
    rows = [measure(ctx, system, "many_readers", spec,
                    idle_probe_s=ARRIVAL_WINDOW_S + 1.5) for system in _systems(ctx, chosen)]
    add_floor_deltas(rows)
    return rows


@scenario("relay", "slow_reader")
def slow_reader(ctx: Context) -> list[Row]:
    """One reader stops reading a large, as-fast-as-possible generation; 9 others read on.

    Server memory must not grow with what the slow reader has not taken; the
    slow reader then resumes and must still get the exact text.
    """
    chars = 20_000 if ctx.quick else SLOW_READER_CHARS
    spec = Spec(host="127.0.0.1", port=0, mode="", n=SLOW_READERS_NORMAL + 1, window_s=0.2,
                ttft_ms=500, tps=0.0, chars=chars, shared=True, slow_readers=1,
                slow_pause_s=SLOW_PAUSE_S, timeout_s=SLOW_PAUSE_S + 30.0)
    chosen = (systems.FLOOR, systems.FLASKSSE, systems.SPOOL_MOCK)
    return [measure(ctx, system, "slow_reader", spec) for system in _systems(ctx, chosen)]
