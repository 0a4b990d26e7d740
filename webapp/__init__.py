"""Spool's web process: Flask app factory, API and SSE relay blueprints."""

from webapp.app import create_app

__all__ = ["create_app"]
