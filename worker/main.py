"""The worker entrypoint (imported only after gevent has patched the stdlib)."""

from __future__ import annotations

import argparse
import logging

from rq import SimpleWorker

from spool.connection import connect_rq
from spool.keys import PRIORITIES
from spool.queue import queue_for
from spool.settings import Settings
from worker import batchfeed, heartbeat
from worker.context import WorkerContext, set_context


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--slots", type=int, default=None,
                        help="generations run at once (default SPOOL_WORKER_SLOTS)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the worker until stopped."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    ctx = WorkerContext.build(settings)
    set_context(ctx)
    ctx.writer.start()
    ctx.watcher.start()
    heartbeat.start(ctx)
    batchfeed.start(ctx)
    rq_client = connect_rq(settings.rq_redis_url)
    queues = [queue_for(rq_client, ctx.keys, p) for p in PRIORITIES]
    worker = SimpleWorker(queues, connection=rq_client, name=ctx.worker_id)
    try:
        worker.work(burst=args.burst, with_scheduler=False)
    finally:
        heartbeat.remove(ctx)
    return 0
