"""`python -m bench [--only FAMILY[.NAME] ...] [--quick]`: run scenarios, report, save results."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

import bench
from bench import report
from bench.provider import start_fake_provider
from bench.registry import Context, Row, selected

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def load_families() -> None:
    """Import every module of the package so each family registers its scenarios."""
    for info in pkgutil.iter_modules(bench.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"bench.{info.name}")


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios and write bench/results/{name}.json and .png."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="*", help="families or family.name to run")
    parser.add_argument("--quick", action="store_true", help="small loads, for a smoke run")
    parser.add_argument("--name", help="results file stem (default: bench or quick)")
    parser.add_argument("--systems", help="comma-separated system names to run (default all)")
    args = parser.parse_args(argv)
    load_families()
    chosen = selected(args.only)
    if not chosen:
        parser.error("no scenario matches --only")
    RESULTS_DIR.mkdir(exist_ok=True)
    provider, provider_url = start_fake_provider()
    ctx = Context(quick=args.quick, results_dir=RESULTS_DIR, provider_url=provider_url,
                  log=lambda line: print(line, flush=True),
                  systems=tuple(args.systems.split(",")) if args.systems else None,
                  provider=provider)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for item in chosen:
            ctx.log(f"{item.family}.{item.name}: {item.doc.splitlines()[0] if item.doc else ''}")
            rows.extend(item.run(ctx))
    finally:
        provider.stop()
    elapsed = time.monotonic() - started
    stem = args.name or ("quick" if args.quick else "bench")
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    report.write_json(rows, RESULTS_DIR / f"{stem}.json", command.strip(), elapsed)
    report.plot(rows, RESULTS_DIR / f"{stem}.png")
    print(report.table(rows))
    print(f"\n{len(rows)} rows in {elapsed:.0f}s -> {RESULTS_DIR}/{stem}.json, {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
