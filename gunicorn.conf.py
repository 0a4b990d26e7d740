"""Gunicorn settings for the `web` process (gevent, long-lived SSE streams)."""

# Patch before anything imports ssl or socket (gunicorn loads this file first).
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

# Fail before forking, with one clear line, when the configuration is wrong
# (e.g. SPOOL_API_KEYS without a long enough SPOOL_SECRET_KEY).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spool.settings import ConfigError, Settings  # noqa: E402

try:
    Settings.from_env()
except ConfigError as _exc:
    # One line per mistake, so an operator can fix them all in one go.
    sys.exit("\n".join(f"spool web: configuration error: {line}"
                       for line in str(_exc).splitlines()))

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# gunicorn's gevent worker plus API.md's JSON body on its own rejects (414,
# 431, 400 on bad framing) and read deadlines for slow or silent clients.
worker_class = "webapp.httpworker.SpoolGeventWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Each SSE reader holds a connection for the whole answer; size for thousands.
worker_connections = int(os.environ.get("SPOOL_WEB_CONNECTIONS", "4000"))
# Async workers notify the arbiter from their own greenlet, so long streams are fine.
timeout = 30
# Streams never end on their own: after this, remaining readers are cut and
# reconnect (with Last-Event-ID) to another process. Heroku kills at 30 s.
graceful_timeout = int(os.environ.get("SPOOL_WEB_GRACE_S", "20"))
keepalive = 75  # longer than typical load balancer idle timeouts
# gunicorn's defaults, said here because they are part of the contract
# (docs/security.md): request line 4094 bytes (414), 100 header fields of
# 8190 bytes each (431).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-" if os.environ.get("SPOOL_ACCESS_LOG") == "1" else None
# The default format logs the Basic-auth user (a key, if a client sends one
# that way) and the query string (stream tokens): log the path only.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("SPOOL_LOG_LEVEL", "info")


def post_worker_init(worker: object) -> None:
    """The app is loaded in this worker: set the collector for a long-lived process."""
    from spool.collector import tune_gc

    tune_gc()
