"""A WSGI app that does nothing: Spool's web server with no Spool in it.

`bench.systems.launch_bare_web` runs it with the Procfile's `web` command
(gunicorn, `gunicorn.conf.py`, Spool's gevent worker class), so an idle
request to it is what the HTTP server alone costs on this host: the part of
Spool's own request latency that no change to Spool's code can remove.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"status":"ok"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request `200 {"status":"ok"}`."""
    start_response("200 OK", HEADERS)
    return [BODY]
