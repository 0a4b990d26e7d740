"""RQ job functions (thin: the work is in `worker.runner`)."""

from __future__ import annotations

from worker import batchfeed
from worker.context import get_context
from worker.runner import run_generation as _run


def run_generation(gen_id: str) -> None:
    """Run generation `gen_id` (enqueued by the web as `worker.jobs.run_generation`)."""
    ctx = get_context()
    try:
        _run(ctx, gen_id)
    finally:
        batchfeed.after_generation(ctx, gen_id)  # a batch row's end counts at once
