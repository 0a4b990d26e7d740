"""Rerun every Redis fault case ten times: `python -m tests.fault_loop [--runs N] [case ...]`.

Not part of the test suite (it takes a while): the fault cases are timing
dependent, so one pass proves little. One private redis-server and one
web + worker stack per case, reused across its runs (a process that dies
shows up as an exit in every later run). Prints one line per run and a
total per case: stuck, holes, process exits, unexpected 5xx (and the
contract's 503s), recoveries.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.faults import CASES, Report, fault_server, fault_stack, run_case

FIELDS = ("generations", "completed", "unavailable", "other_end", "stuck", "holes", "exits",
          "server_errors", "unavailable_503")


def _line(name: str, run: int, seconds: float, report: Report) -> str:
    problems = f" problems={report.problems[:3]}" if report.problems else ""
    return (f"{name} run {run}: {seconds:.1f} s completed={report.completed} "
            f"unavailable={report.unavailable} other={report.other_end} stuck={report.stuck} "
            f"holes={report.holes} exits={report.exits} 5xx={report.server_errors} "
            f"503={report.unavailable_503} recovered={report.recovered}{problems}")


def run_cases(names: list[str], runs: int) -> list[tuple[str, list[Report]]]:
    """Each case `runs` times on a stack of its own; the reports, per case."""
    totals = []
    for name in names:
        server = fault_server()
        stack = fault_stack(server)
        reports = []
        try:
            for run in range(1, runs + 1):
                started = time.monotonic()
                report = run_case(stack, server, CASES[name])
                reports.append(report)
                print(_line(name, run, time.monotonic() - started, report), flush=True)
        finally:
            stack.close()
            server.stop()
        totals.append((name, reports))
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rerun the Redis fault cases")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("cases", nargs="*", default=list(CASES))
    args = parser.parse_args(argv)
    totals = run_cases(args.cases, args.runs)
    print("\ncase                runs   gens   done  unav.  other  stuck  holes  exits"
          "    5xx    503  recovered")
    failed = False
    for name, reports in totals:
        row = [sum(getattr(r, f) for r in reports) for f in FIELDS]
        recovered = sum(r.recovered for r in reports)
        failed |= any(not r.ok() or r.other_end for r in reports)
        print(f"{name:<19} {len(reports):>4}  " + "  ".join(f"{v:>5}" for v in row)
              + f"  {recovered:>5}/{len(reports)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
