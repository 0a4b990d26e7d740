"""The scenario registry: how scenario families plug into `python -m bench`.

A family is one module in `bench/` (e.g. `bench/relay.py`). It registers
scenarios with the decorator below; `python -m bench` imports every module
of the package, so adding a file is all it takes:

    from bench.registry import Context, Row, scenario

    @scenario("relay", "streams")
    def streams(ctx: Context) -> list[Row]:
        ...  # start systems, run load, return one row per (system, n)

A row is a flat dict with at least `scenario`, `system` and `n`; the report
shows the well-known columns (see `bench/report.py`) and keeps all of them
in the JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.procs import Proc

Row = dict[str, Any]
RunFn = Callable[["Context"], list[Row]]


@dataclass
class Context:
    """What every scenario gets: run options and the shared fake provider."""

    quick: bool
    results_dir: Path
    provider_url: str  # OpenAI-style base URL of the loopback fake provider, ends in /v1
    log: Callable[[str], None] = print
    systems: tuple[str, ...] | None = None  # --systems: run only these (None: all)
    extra: dict[str, Any] = field(default_factory=dict)
    provider: Proc | None = None  # the fake provider's process (its CPU is reported)


@dataclass(frozen=True)
class Scenario:
    """A registered scenario."""

    family: str
    name: str
    run: RunFn
    doc: str


SCENARIOS: dict[str, Scenario] = {}


def scenario(family: str, name: str) -> Callable[[RunFn], RunFn]:
    """Register `fn` as scenario `family.name` (names must be unique)."""

    def register(fn: RunFn) -> RunFn:
        key = f"{family}.{name}"
        if key in SCENARIOS:
            raise ValueError(f"scenario {key} registered twice")
        SCENARIOS[key] = Scenario(family, name, fn, (fn.__doc__ or "").strip())
        return fn

    return register


def selected(only: list[str] | None) -> list[Scenario]:
    """Scenarios whose family or `family.name` is in `only` (all when None)."""
    if not only:
        return list(SCENARIOS.values())
    return [s for key, s in SCENARIOS.items() if s.family in only or key in only]
