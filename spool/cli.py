"""`spool batch ...`: submit, watch, inspect and download batches over HTTP.

Talks to `SPOOL_URL` (default http://127.0.0.1:5000) with `SPOOL_API_KEY`.
Only the standard library and tqdm, so the CLI installs anywhere.
Ctrl-C while watching only stops watching: the batch keeps running on the
server, and the CLI prints how to pick it up again.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

DEFAULT_URL = "http://127.0.0.1:5000"
HTTP_TIMEOUT_S = 60.0
STREAM_TIMEOUT_S = 90.0  # longer than the server's 15 s ping interval
RECONNECT_DELAY_S = 1.0
RECONNECT_ATTEMPTS = 30  # for plain GETs while watching (the stream itself retries forever)
COPY_CHUNK = 64 * 1024
EXIT_INTERRUPTED = 130
NDJSON = "application/x-ndjson"


class CliError(Exception):
    """A failure to report on one line, without a traceback."""


class Unreachable(CliError):
    """The server could not be reached or answered 5xx: worth retrying."""


@dataclass
class Event:
    """One SSE event (the subset of the format Spool sends)."""

    id: int
    event: str
    data: dict[str, Any]


class Client:
    """A tiny HTTP client for the Spool API."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def open(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None,
             timeout: float = HTTP_TIMEOUT_S) -> Any:
        """Send a request; returns the open response, raises CliError on an API error."""
        all_headers = dict(headers or {})
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url + path, data=body, method=method,
                                     headers=all_headers)
        try:
            return urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            error = Unreachable if exc.code >= 500 else CliError
            raise error(_api_message(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {exc}") from None

    def json(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> dict[str, Any]:
        """A request whose answer is a JSON object."""
        with self.open(method, path, body, headers) as resp:
            found: dict[str, Any] = json.loads(resp.read())
            return found


def _api_message(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read())["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}"
    param = f" ({error['param']})" if error.get("param") else ""
    return f"HTTP {exc.code} {error.get('type')}: {error.get('message')}{param}"


def parse_sse(lines: IO[bytes]) -> Iterator[Event]:
    """Events from an SSE byte stream (comments and `retry:` are skipped)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data and "id" in fields:
                yield Event(int(fields["id"]), fields.get("event", "message"),
                            json.loads("\n".join(data)))
            fields, data = {}, []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name in ("id", "event"):
            fields[name] = value


def _done(data: dict[str, Any]) -> int:
    return int(data.get("completed", 0)) + int(data.get("failed", 0)) + int(
        data.get("cancelled", 0))


def get_patiently(client: Client, path: str) -> dict[str, Any]:
    """GET a JSON object, riding out a server restart (RECONNECT_ATTEMPTS tries)."""
    for _ in range(RECONNECT_ATTEMPTS - 1):
        try:
            return client.json("GET", path)
        except Unreachable:
            time.sleep(RECONNECT_DELAY_S)
    return client.json("GET", path)


def _follow(client: Client, batch_id: str, bar: Any, last: int) -> tuple[int, bool]:
    """Read the progress stream once, after event `last`; (last seen, batch ended)."""
    headers = {"Accept": "text/event-stream"}
    if last:
        headers["Last-Event-ID"] = str(last)
    with client.open("GET", f"/v1/batches/{batch_id}/events", headers=headers,
                     timeout=STREAM_TIMEOUT_S) as resp:
        if resp.status == 204:
            return last, True  # ended before we resumed: the record has the outcome
        for event in parse_sse(resp):
            last = event.id
            # Replayed events start below `initial`: never move back.
            bar.update(max(0, _done(event.data) - bar.n))
            bar.set_postfix(failed=event.data.get("failed", 0), refresh=False)
            if event.event in ("done", "cancelled"):
                return last, True
    raise Unreachable("the server closed the stream")


def watch(client: Client, batch_id: str, out: IO[str]) -> dict[str, Any]:
    """Show a progress bar until the batch ends; reconnects (resuming) if cut."""
    from tqdm import tqdm  # imported here: only watching needs it

    info = get_patiently(client, f"/v1/batches/{batch_id}")
    bar = tqdm(total=info["total"], initial=_done(info), unit="row", desc=batch_id,
               dynamic_ncols=True, file=sys.stderr)
    last, ended = 0, False
    try:
        while not ended:
            try:
                last, ended = _follow(client, batch_id, bar, last)
            except (Unreachable, OSError, http.client.HTTPException) as exc:
                bar.write(f"stream interrupted ({exc}); resuming after event {last}",
                          file=sys.stderr)
                time.sleep(RECONNECT_DELAY_S)
    finally:
        bar.close()
    summary = get_patiently(client, f"/v1/batches/{batch_id}")
    print(f"{batch_id} {summary['status']}: {summary['completed']} completed, "
          f"{summary['failed']} failed, {summary['cancelled']} cancelled "
          f"of {summary['total']}", file=out)
    return summary


def resume_hint(batch_id: str) -> str:
    """What to type to pick a batch up again after Ctrl-C."""
    return (f"\nStopped watching; batch {batch_id} keeps running on the server.\n"
            f"  watch again:  spool batch watch {batch_id}\n"
            f"  status:       spool batch status {batch_id}\n"
            f"  results:      spool batch results {batch_id} -o results.jsonl\n"
            f"  cancel it:    spool batch cancel {batch_id}\n")


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    """POST the file (NDJSON, or JSON with "requests"), then watch unless --no-watch."""
    path = Path(args.file)
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    content_type = "application/json" if path.suffix == ".json" else NDJSON
    headers = {"Content-Type": content_type}
    if args.idempotency_key:
        headers["Idempotency-Key"] = args.idempotency_key
    created = client.json("POST", "/v1/batches", body, headers)
    batch_id = created["id"]
    print(f"submitted {batch_id}: {created['total']} rows", flush=True)
    if args.no_watch:
        print(f"watch it:  spool batch watch {batch_id}")
        return 0
    return _watch_outcome(client, batch_id)


def _watch_outcome(client: Client, batch_id: str) -> int:
    try:
        summary = watch(client, batch_id, sys.stdout)
    except KeyboardInterrupt:
        print(resume_hint(batch_id), file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    print(f"results:   spool batch results {batch_id} -o results.jsonl")
    return 0 if summary["status"] == "completed" else 1


def cmd_watch(client: Client, args: argparse.Namespace) -> int:
    """Watch an existing batch."""
    return _watch_outcome(client, args.batch_id)


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    """Print a batch's counts and status."""
    info = client.json("GET", f"/v1/batches/{args.batch_id}")
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['id']}  {info['status']}")
    for name in ("total", "completed", "failed", "cancelled"):
        print(f"  {name:<10} {info[name]}")
    print(f"  {'created':<10} {info['created_at']}")
    print(f"  {'finished':<10} {info['finished_at'] or '-'}")
    return 0


def cmd_results(client: Client, args: argparse.Namespace) -> int:
    """Stream the results file to `-o` (or stdout), never holding it in memory."""
    lines = 0
    with client.open("GET", f"/v1/batches/{args.batch_id}/results") as resp:
        target = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
        try:
            while chunk := resp.read(COPY_CHUNK):
                target.write(chunk)
                lines += chunk.count(b"\n")
        finally:
            if args.output:
                target.close()
            else:
                target.flush()
    if args.output:
        print(f"wrote {lines} results to {args.output}", file=sys.stderr)
    return 0


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    """Cancel a batch: queued rows are dropped, running ones stopped."""
    info = client.json("POST", f"/v1/batches/{args.batch_id}/cancel")
    print(f"{info['id']} cancel requested; status {info['status']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `spool` command line."""
    parser = argparse.ArgumentParser(prog="spool", description="Spool command line")
    parser.add_argument("--url", default=os.environ.get("SPOOL_URL", DEFAULT_URL),
                        help="server URL (default $SPOOL_URL or %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("SPOOL_API_KEY"),
                        help="API key (default $SPOOL_API_KEY)")
    top = parser.add_subparsers(dest="group", required=True)
    batch = top.add_parser("batch", help="batch jobs").add_subparsers(dest="cmd", required=True)
    submit = batch.add_parser("submit", help="submit a .jsonl (or .json) file and watch it")
    submit.add_argument("file")
    submit.add_argument("--idempotency-key", help="resubmitting with the same key is a no-op")
    submit.add_argument("--no-watch", action="store_true", help="print the id and exit")
    submit.set_defaults(func=cmd_submit)
    for name, func, text in (("watch", cmd_watch, "watch a batch's progress"),
                             ("status", cmd_status, "show a batch's counts"),
                             ("results", cmd_results, "download results as NDJSON"),
                             ("cancel", cmd_cancel, "cancel a batch")):
        sub = batch.add_parser(name, help=text)
        sub.add_argument("batch_id")
        sub.set_defaults(func=func)
        if name == "status":
            sub.add_argument("--json", action="store_true", help="print the raw JSON")
        if name == "results":
            sub.add_argument("-o", "--output", help="file to write (default stdout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `spool` console script."""
    args = build_parser().parse_args(argv)
    client = Client(args.url, args.api_key)
    try:
        code: int = args.func(client, args)
    except CliError as exc:
        print(f"spool: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
