"""The Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask

from spool.model_listing import with_listed_models
from spool.settings import Settings
from webapp import api, cors, jsonprovider, leases, metrics, openapi, ops
from webapp.batches import routes as batches
from webapp.errors import register_error_handlers
from webapp.facades import ai_sdk, responses
from webapp.facades import chat as facade
from webapp.relay import stream
from webapp.services import Services

log = logging.getLogger("spool.web")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app; settings default to the environment."""
    # Providers with `_MODELS=auto` are asked for their models now, never per request.
    settings = with_listed_models(settings or Settings.from_env())
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    jsonprovider.install(app)
    app.extensions["spool"] = Services.build(settings)
    register_error_handlers(app)
    cors.install(app, settings)
    leases.init_app(app)
    for blueprint in (api.bp, stream.bp, ops.bp, facade.bp, ai_sdk.bp, responses.bp,
                      openapi.bp, batches.bp):
        app.register_blueprint(blueprint)
    metrics.init_app(app)
    if not settings.auth_enabled:
        log.warning(
            "SPOOL_API_KEYS is not set: authentication is OFF and every caller is tenant "
            "'dev'. Set SPOOL_API_KEYS and SPOOL_SECRET_KEY before exposing this server."
        )
    return app
