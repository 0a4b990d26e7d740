"""`python -m tests.fakeprovider --port 0 --port-file PATH`: run the fake provider server."""

from __future__ import annotations

import argparse
import os
import signal

import gevent

from tests.fakeprovider.server import FakeProviderServer


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakeprovider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--ttft-ms", type=int, default=200)
    parser.add_argument("--tps", type=float, default=50.0, help="tokens per second; 0 = no pacing")
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--name", default="fake", help="who `whoami` scenarios say answered")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    args = _parse(argv)
    server = FakeProviderServer(args.host, args.port, ttft_ms=args.ttft_ms, tps=args.tps,
                                tokens=args.tokens, name=args.name)
    port = server.start()
    if args.port_file:
        # Write-then-rename, so a reader never sees a half-written port.
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w") as fh:
            fh.write(str(port))
        os.replace(tmp, args.port_file)
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, server.stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
