"""CORS: off by default; origins allowed by SPOOL_CORS_ORIGINS only.

Auth is a Bearer header (or a stream token in the URL), never a cookie, so
credentials are not allowed cross-origin and a permissive origin cannot
ride on a user's session. `Last-Event-ID` is an allowed request header
because a fetch-based reader that resumes sends it.
"""

from __future__ import annotations

from flask import Flask, Response, request

from spool.settings import Settings

ANY_ORIGIN = "*"
ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
EXPOSED_HEADERS = "Retry-After, Spool-Generation-Id"
PREFLIGHT_MAX_AGE_S = 600


def allowed_origin(settings: Settings, origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin value for `origin`, or None (not allowed)."""
    if not origin or not settings.cors_origins:
        return None
    if ANY_ORIGIN in settings.cors_origins:
        return ANY_ORIGIN
    return origin if origin in settings.cors_origins else None


def _decorate(settings: Settings, response: Response) -> Response:
    response.vary.add("Origin")
    allow = allowed_origin(settings, request.headers.get("Origin"))
    if allow is None:
        return response
    response.headers["Access-Control-Allow-Origin"] = allow
    response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return response


def _preflight() -> Response | None:
    # A preflight carries no credentials; answering it needs no auth and
    # touches no handler (Flask's automatic OPTIONS would answer 200 anyway).
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        return Response(status=204)
    return None


def install(app: Flask, settings: Settings) -> None:
    """Answer preflights and add CORS headers for configured origins."""
    app.before_request(_preflight)
    app.after_request(lambda response: _decorate(settings, response))
