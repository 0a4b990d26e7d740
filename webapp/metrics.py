"""`/metrics` (Prometheus text), request ids and request logs for the web process.

The numbers come from Redis (see `spool.metrics`): counters and histograms
added there by every process, gauges from every live process's snapshot,
queue depths read from RQ at scrape time. Any web process answers for the
whole deployment.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from spool import logs
from spool import metrics as m
from spool.keys import PRIORITIES
from spool.queue import queue_for
from webapp.services import Services, services

log = logging.getLogger("spool.web")

bp = Blueprint("metrics", __name__)

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # anything else is replaced
QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})  # probes: debug level only
EXTENSION = "spool_metrics"


def init_app(app: Flask) -> None:
    """Logging, request ids and `/metrics` for this app (the flusher starts on first request)."""
    svc: Services = app.extensions["spool"]
    logs.configure_from_settings(svc.settings, os.environ.get("SPOOL_LOG_LEVEL", "INFO"))
    name = f"web.{socket.gethostname()}.{secrets.token_hex(3)}"
    store = m.MetricsStore(svc.redis, svc.keys, name, "web", svc.settings.metrics_flush_s)
    app.extensions[EXTENSION] = m.Flusher(store, lambda: _web_gauges(svc))
    app.register_blueprint(bp)


def _web_gauges(svc: Services) -> dict[str, float]:
    return {m.series(m.SSE_READERS, ()): float(svc.hub.reader_count)}


def _flusher() -> m.Flusher:
    found: m.Flusher = current_app.extensions[EXTENSION]
    return found


@bp.before_app_request
def _begin() -> None:
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = supplied if REQUEST_ID_OK.match(supplied) else secrets.token_hex(8)
    logs.reset(request_id=request_id)
    g.spool_started = time.monotonic()
    gen_id = (request.view_args or {}).get("gen_id")
    if gen_id:
        logs.bind(generation_id=gen_id)
    _flusher().start()


@bp.after_app_request
def _end(response: Response) -> Response:
    context = logs.current()
    response.headers[REQUEST_ID_HEADER] = context.get("request_id", "")
    # Routes that create a generation bind its id; facades also name it in a header.
    gen_id = response.headers.get("Spool-Generation-Id")
    started = g.get("spool_started", time.monotonic())
    level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
    # The path only: a query string can carry a stream token.
    logs.log_buffered(log, level, "request", {
        "method": request.method, "path": request.path, "status": response.status_code,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "streaming": response.is_streamed,
        **({"generation_id": gen_id} if gen_id and "generation_id" not in context else {}),
    })
    return response


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus text format, for the whole deployment."""
    svc = services()
    flusher = _flusher()
    flusher.flush()  # this process's latest deltas count in this very scrape
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(svc, flusher.store))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class RedisCollector(Collector):
    """Renders the shared counters, live gauges and RQ queue depths."""

    def __init__(self, svc: Services, store: m.MetricsStore) -> None:
        self.svc = svc
        self.store = store

    def collect(self) -> Iterator[Metric]:
        try:
            counters, snapshots = self.store.read()
            queued = {p: queue_for(self.svc.rq_redis, self.svc.keys, p).count
                      for p in PRIORITIES}
        except redis.RedisError:
            yield _gauge(m.REDIS_UP, {(): 0.0})
            return
        yield _gauge(m.REDIS_UP, {(): 1.0})
        grouped = _group(counters)
        for spec in m.FLUSHED:
            yield _render(spec, grouped.get(spec.name, {}))
        yield from _snapshot_gauges(snapshots)
        yield _gauge(m.QUEUED, {(p,): float(n) for p, n in queued.items()})


def _group(counters: dict[str, float]) -> dict[str, dict[tuple[str, ...], dict[str, float]]]:
    grouped: dict[str, dict[tuple[str, ...], dict[str, float]]] = defaultdict(
        lambda: defaultdict(dict))
    for name, value in counters.items():
        metric, labels, suffix = m.parse_series(name)
        grouped[metric][labels][suffix] = value
    return grouped


def _render(spec: m.Spec, by_labels: dict[tuple[str, ...], dict[str, float]]) -> Metric:
    if spec.kind == "counter":
        family: Any = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        for labels, parts in sorted(by_labels.items()):
            family.add_metric(list(labels), parts.get("", 0.0))
        return family
    family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    for labels, parts in sorted(by_labels.items()):
        cumulative, buckets = 0.0, []
        for i, bound in enumerate((*spec.buckets, float("inf"))):
            cumulative += parts.get(f"b{i}", 0.0)
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric(list(labels), buckets, parts.get("sum", 0.0))
    return family


def _gauge(spec: m.Spec, values: dict[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
    for labels, value in sorted(values.items()):
        family.add_metric(list(labels), value)
    return family


def _snapshot_gauges(snapshots: list[dict[str, Any]]) -> Iterator[Metric]:
    sums: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
    kinds: dict[tuple[str, ...], float] = defaultdict(float)
    for snap in snapshots:
        kinds[(str(snap["kind"]),)] += 1
        for name, value in snap["values"].items():
            metric, labels, _ = m.parse_series(name)
            sums[metric][labels] += float(value)
    for spec in m.SNAPSHOT_GAUGES:
        default: dict[tuple[str, ...], float] = {} if spec.labels else {(): 0.0}
        yield _gauge(spec, dict(sums.get(spec.name, default)))
    yield _gauge(m.PROCESSES, dict(kinds))
