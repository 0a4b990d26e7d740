"""The cyclic garbage collector, set once a long-lived process has started.

Both processes allocate per request or per token and keep what they
imported for life: the worker the SDKs' modules and models (~230k objects),
the web Flask, werkzeug and the app. Every full pass walked all of that,
and the youngest generation was collected hundreds of times a second.
Measured: at 300 streams through `openai` the collector took ~7 % of the
worker's CPU; under a `POST /v1/generations` load, 3.7 % of the web's
(0.134 s of 3.6 s: 78 young, 7 middle and 1 full pass in 4 s), 1.1 % after
this (5 young passes, none older).
"""

from __future__ import annotations

import gc

# Allocations between collections of the youngest generation (CPython's default: 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Freeze everything made so far and collect the youngest generation less often.

    Call once the process has built what it keeps (imports, app, clients).
    With the larger threshold most short-lived objects are freed by
    reference counting before a pass ever sees them.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
