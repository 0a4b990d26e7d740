"""Web processes settle expired generation leases too, so a dead worker is
noticed even when no other worker is alive.

The settle greenlet starts lazily on the first request of each serving
process: never at import, never in the gunicorn master.
"""

from __future__ import annotations

import os

import gevent
from flask import Flask
from gevent import monkey

from spool.lease import Settler, lease_store, settle_forever
from webapp.services import services

_started_in: set[int] = set()  # pids whose settle greenlet runs


def _ensure_settler() -> None:
    if os.getpid() in _started_in:
        return
    _started_in.add(os.getpid())
    if not monkey.is_module_patched("socket"):
        return  # not a gevent server (e.g. Flask's test client): nothing to run it
    svc = services()
    lease_redis = lease_store(svc.redis, svc.settings.rq_redis_url)
    settler = Settler(svc.log, svc.rq_redis, svc.settings.job_timeout_s, lease_redis)
    gevent.spawn(settle_forever, settler)


def init_app(app: Flask) -> None:
    """Start this process's settle loop on its first request."""
    app.before_request(_ensure_settler)
