"""Print the results table and write JSON and a PNG plot under bench/results/."""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from bench.registry import Row

# (column key, header, width): the table shows these when a row has them.
COLUMNS = (
    ("scenario", "scenario", 15), ("system", "system", 14), ("n", "n", 5),
    ("added_ttft_p50_ms", "+ttft50", 8), ("added_ttft_p99_ms", "+ttft99", 8),
    ("added_gap_p99_ms", "+gap99", 7), ("ttft_p50_ms", "ttft50", 7), ("gap_p99_ms", "gap99", 7),
    ("tok_per_s", "tok/s", 7), ("cpu_s_per_1k_tok", "cpu/1k", 7),
    ("web_cpu_s_per_1k_tok", "web/1k", 7), ("redis_cpu_s", "rcpu_s", 6),
    ("redis_cpu_s_per_1k_tok", "rcpu/1k", 7),
    ("client_cpu_s", "ccpu_s", 6), ("provider_cpu_s", "pcpu_s", 6),
    ("machine_cores", "mcores", 6), ("machine_cores_peak", "mpeak", 5),
    ("steal_cores", "steal", 5),
    ("peak_rss_mb", "rssMB", 6), ("rss_growth_mb", "+rssMB", 6), ("rss_per_conn_kb", "KB/conn", 7),
    ("idle_rss_per_conn_kb", "KB/idle", 7), ("web_redis_conns", "rconn", 5),
    ("redis_clients", "rclients", 8), ("errors", "err", 4), ("lost_chars", "lost", 6),
    ("doubled_chars", "dup", 5), ("exact", "exact", 5), ("spread_p99_ms", "sprd99", 7),
    ("queue_ms_p50", "queue50", 7), ("queue_ms_p99", "queue99", 7),
    ("efficiency", "effic", 5), ("cores_busy", "cores", 5),  # bench/scaling.py
    # bench/jobpath.py: one row per "Done when" line of issue 13
    ("line", "line", 4), ("figure", "figure", 44), ("measured", "measured", 8),
    ("target", "target", 7), ("pass", "pass", 4),
)


# The goals for added latency (ms), drawn on the plot.
GOALS = {"added_ttft_p50_ms": 5.0, "added_ttft_p99_ms": 20.0, "added_gap_p99_ms": 10.0}


def _cell(value: Any, width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"
    else:
        text = str(value)
    return text[:width].rjust(width)


def table(rows: list[Row]) -> str:
    """A fixed-width text table of the well-known columns present in `rows`."""
    present = [c for c in COLUMNS if any(c[0] in r for r in rows)]
    lines = [" ".join(h.rjust(w) for _, h, w in present)]
    lines += [" ".join(_cell(r.get(k), w) for k, _, w in present) for r in rows]
    return "\n".join(lines)


def _git_head() -> str | None:
    """The commit the run measured (with `+dirty` when the tree has changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True,
                               cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def write_json(rows: list[Row], path: Path, command: str, elapsed_s: float) -> None:
    """All rows plus when, where and how they were measured."""
    meta = {"command": command, "commit": _git_head(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "elapsed_s": round(elapsed_s, 1), "machine": platform.platform(),
            "python": platform.python_version()}
    path.write_bytes(orjson.dumps({"meta": meta, "rows": rows}, option=orjson.OPT_INDENT_2))


def plot(rows: list[Row], path: Path) -> None:
    """Four panels: added TTFT p50/p99 and added gap p99 vs N, CPU per 1k tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stream_rows = [r for r in rows if str(r["scenario"]).startswith("streams")]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = (("added_ttft_p50_ms", "added TTFT p50 (ms)"), ("added_ttft_p99_ms",
              "added TTFT p99 (ms)"), ("added_gap_p99_ms", "added inter-token p99 (ms)"),
              ("cpu_s_per_1k_tok", "server CPU s / 1k tokens"))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for system in sorted({r["system"] for r in stream_rows}):
            points = sorted((r["n"], r[key]) for r in stream_rows
                            if r["system"] == system and r.get(key) is not None)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=system)
        if key in GOALS:
            ax.axhline(GOALS[key], color="black", linestyle="--", linewidth=1, label="goal")
        ax.set_title(title)
        ax.set_xlabel("concurrent streams")
        ax.set_xscale("log")
        ax.set_yscale("log" if key == "cpu_s_per_1k_tok" else "symlog",
                      **({} if key == "cpu_s_per_1k_tok" else {"linthresh": 10}))
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("Spool vs peers: concurrent streams (floor-subtracted latency)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
