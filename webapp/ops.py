"""Operational routes: health, readiness, the demo page (`/v1/models`: webapp/facades/chat.py)."""

from __future__ import annotations

import time
from pathlib import Path

import redis
from flask import Blueprint, jsonify, send_from_directory
from flask.typing import ResponseReturnValue

from webapp.services import services

bp = Blueprint("ops", __name__)

STATIC_DIR = Path(__file__).parent / "static"
WORKER_ALIVE_S = 30  # a worker heartbeat older than this does not count
WRITE_PROBE_TTL_S = 10  # the readiness write probe expires by itself


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 while this process serves requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """200 when Redis answers and accepts writes and a worker heartbeat is recent.

    A Redis that answers PING but refuses writes (maxmemory with noeviction,
    a read-only replica after a failover, MISCONF) cannot take a generation,
    so a small write with a TTL is part of the check.
    """
    svc = services()
    try:
        svc.redis.ping()
        cutoff = time.time() - WORKER_ALIVE_S
        workers = int(svc.redis.zcount(svc.keys.workers(), cutoff, "+inf"))
    except redis.RedisError:
        return jsonify(status="unavailable", redis=False, workers=0), 503
    try:
        svc.redis.set(svc.keys.write_probe(), "1", ex=WRITE_PROBE_TTL_S)
    except redis.RedisError as exc:
        return jsonify(status="unavailable", redis=True, writable=False, workers=workers,
                       reason=type(exc).__name__), 503
    if workers == 0:
        return jsonify(status="unavailable", redis=True, workers=0), 503
    return jsonify(status="ok", redis=True, workers=workers)


@bp.get("/")
def index() -> ResponseReturnValue:
    """The demo chat page."""
    return send_from_directory(STATIC_DIR, "index.html")
