"""RQ's serializer check, once per serializer instead of once per object.

RQ 2.x resolves a job's serializer again every time it builds a Job, a
registry or a Result (`rq.serializers.resolve_serializer`): a runtime
`typing.Protocol` isinstance, ~7 µs on Python 3.11, which walks the
protocol's attributes each time. Finishing one generation built ~7 of them
(its started and finished registries, twice the started one through the
execution, its Result): about a tenth of the worker's CPU per short
generation (py-spy during `python -m bench --only jobpath`). A serializer
that passed the check once passes it again, so each distinct one is checked
once; names (str) and None still go through RQ's own resolution every time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import rq.serializers

# The RQ modules that build Jobs, registries and Results with the check.
RQ_MODULES = ("rq.job", "rq.registry", "rq.results")
MAX_REMEMBERED = 32  # distinct serializer objects; more are checked every time

Resolve = Callable[..., Any]


def remembering(resolve: Resolve) -> Resolve:
    """`resolve`, skipping the check for a serializer object it already passed."""
    passed: dict[int, Any] = {}  # id -> the object itself, so the id cannot be reused

    def resolve_serializer(serializer: Any = None) -> Any:
        if serializer is None or isinstance(serializer, str):
            return resolve(serializer)
        if passed.get(id(serializer)) is serializer:
            return serializer
        resolved = resolve(serializer)  # raises for one without dumps/loads: not remembered
        if len(passed) < MAX_REMEMBERED:
            passed[id(resolved)] = resolved
        return resolved

    resolve_serializer.__wrapped__ = resolve  # type: ignore[attr-defined]
    return resolve_serializer


def install() -> None:
    """Use the remembering check in the RQ modules a worker builds objects with (idempotent)."""
    original = rq.serializers.resolve_serializer
    fast = remembering(original)
    for name in RQ_MODULES:
        module = importlib.import_module(name)
        current = getattr(module, "resolve_serializer", None)
        if current is original:
            module.resolve_serializer = fast  # type: ignore[attr-defined]
