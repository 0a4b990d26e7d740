"""`python -m worker`: the concurrent generation worker (imported after gevent patching).

`--processes N` runs a small supervisor that starts N worker processes (each
its own interpreter, patched first thing), forwards SIGTERM/SIGINT to them,
restarts one that dies unexpectedly, and exits 0 once all have stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

import gevent

from spool import logs, metrics
from spool.collector import tune_gc
from spool.connection import connect_rq
from spool.settings import Settings
from worker import batchfeed, providers, rqtime, serializers
from worker.context import WorkerContext, set_context
from worker.worker import SpoolWorker

log = logging.getLogger("spool.worker")

RESTART_DELAY_S = 1.0  # before restarting a crashed child
RQ_POOL_SIZE = 64  # RQ bookkeeping of all slots shares these (callers wait for one)
SUPERVISE_POLL_S = 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--slots", type=int, default=None,
                        help="generations run at once per process (default SPOOL_WORKER_SLOTS)")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes to run under a supervisor (default 1)")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args(argv)
    if args.slots is not None and args.slots < 1:
        parser.error("--slots must be at least 1")
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one worker process, or supervise several."""
    args = parse_args(argv)
    settings = Settings.from_env()
    logs.configure_from_settings(settings, os.environ.get("SPOOL_LOG_LEVEL", "INFO"))
    if args.processes > 1:
        return supervise(args)
    ctx = WorkerContext.build(settings)
    set_context(ctx)
    serializers.install()
    rqtime.install()
    # Import the SDKs and make their clients now, not on a generation's first request.
    adapters = providers.registry(settings)
    log.info("providers ready in %.2f s: %s", adapters.build_s, ", ".join(
        f"{name} ({config.kind})" for name, config in settings.providers.items()))
    tune_gc()
    slots = args.slots or settings.worker_slots
    rq_client = connect_rq(settings.rq_redis_url, max_connections=RQ_POOL_SIZE, blocking=True)
    worker = SpoolWorker(ctx, rq_client, slots)
    log.info("worker %s: %d slots (%d for batch), grace %.0f s", worker.name, slots,
             worker.batch_slots, worker.grace_s)
    flusher = metrics.worker_flusher(ctx.redis, ctx.keys, ctx.worker_id,
                                     settings.metrics_flush_s, slots)
    flusher.start()
    batchfeed.start(ctx)
    try:
        worker.work(burst=args.burst)
    finally:
        flusher.flush()
        flusher.store.remove()
    return 0


def _child_command(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "worker", "--processes", "1"]
    if args.slots is not None:
        command += ["--slots", str(args.slots)]
    if args.burst:
        command.append("--burst")
    return command


def supervise(args: argparse.Namespace) -> int:
    """Keep `args.processes` workers running until SIGTERM, then stop them all."""
    stopping = False

    def forward(signum: int) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    command = _child_command(args)
    children = [subprocess.Popen(command) for _ in range(args.processes)]
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, forward, signum)
    while any(child.poll() is None for child in children) or not stopping:
        for index, child in enumerate(children):
            code = child.poll()
            if code is None or stopping or (args.burst and code == 0):
                continue
            log.warning("worker pid %d exited with %s; restarting", child.pid, code)
            time.sleep(RESTART_DELAY_S)
            children[index] = subprocess.Popen(command)
        if args.burst and all(child.poll() is not None for child in children):
            break
        gevent.sleep(SUPERVISE_POLL_S)
    return 0
