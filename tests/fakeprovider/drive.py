"""Run one request through `resilient.open_stream` in a gevent-patched process, as the worker does.

`python -m tests.fakeprovider.drive PROVIDER REQUEST_JSON [--close-after N]` prints
one JSON object (`--serve` runs many cases from stdin instead): the pieces
seen, the notices, the error (if any), which provider served, and timings.
Settings come from the environment, so a test sets OPENAI_BASE_URL,
SPOOL_FIRST_TOKEN_TIMEOUT_S, SPOOL_RETRY_BASE_S, ...
Timeouts are gevent timers, so they only work in a patched process: that is
why the tests drive the policy through this script rather than in-process.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402

from spool.settings import Settings  # noqa: E402
from worker.providers.base import ProviderError, TextDelta, ToolCallDelta  # noqa: E402
from worker.providers.resilient import open_stream  # noqa: E402


def run(provider: str, request: dict[str, Any], close_after: int | None) -> dict[str, Any]:
    """Iterate the stream (closing it after `close_after` content pieces) and report."""
    notices: list[str] = []
    pieces: list[dict[str, Any]] = []
    error = None
    started = time.monotonic()
    stream = open_stream(request, Settings.from_env(), provider, notices.append)
    closed_at = None
    try:
        content = 0
        for piece in stream:
            pieces.append({"kind": type(piece).__name__, **dataclasses.asdict(piece),
                           "t": time.monotonic() - started})
            content += isinstance(piece, TextDelta | ToolCallDelta)
            if close_after is not None and content >= close_after:
                stream.close()
                closed_at = time.time()
                break
    except ProviderError as exc:
        error = {"type": exc.type, "message": exc.message, "retryable": exc.retryable,
                 "status": exc.status}
    return {"pieces": pieces, "notices": notices, "error": error, "provider": stream.provider,
            "model": stream.model, "elapsed_s": time.monotonic() - started,
            "closed_at": closed_at}


def serve() -> None:
    """Run cases read as JSON lines from stdin, one report line each (saves a start-up per case).

    A case is `{"provider", "request", "env", "close_after"}`; `env` overrides
    the process environment for that case only.
    """
    base = dict(os.environ)
    for line in sys.stdin:
        case = orjson.loads(line)
        os.environ.clear()
        os.environ.update({**base, **case.get("env", {})})
        try:
            report = run(case["provider"], case["request"], case.get("close_after"))
        except Exception as exc:  # report, so the test shows it instead of hanging
            report = {"crash": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
        sys.stdout.flush()


def main() -> None:
    """Parse arguments, run one case (or `--serve` many), print the report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("provider", nargs="?")
    parser.add_argument("request", nargs="?")
    parser.add_argument("--close-after", type=int)
    parser.add_argument("--serve", action="store_true", help="read cases from stdin")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    report = run(args.provider, orjson.loads(args.request), args.close_after)
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


if __name__ == "__main__":
    main()
