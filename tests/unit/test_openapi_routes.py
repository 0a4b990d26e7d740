"""`/openapi.json` describes every route the app serves (and no route it does not)."""

from __future__ import annotations

import logging
import re

import pytest

from spool.settings import Settings
from webapp.app import create_app
from webapp.openapi import document

UNDOCUMENTED = {"/static/{}"}  # the demo page's assets


def _shape(path: str) -> str:
    """A path with its parameter names erased: `/v1/x/<x_id>` and `/v1/x/{id}` agree."""
    return re.sub(r"<(?:\w+:)?\w+>|\{\w+\}", "{}", path)


def test_every_route_is_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # never contacted
    monkeypatch.setenv("SPOOL_REDIS_CLUSTER", "0")
    logging.disable(logging.WARNING)
    try:
        app = create_app()
    finally:
        logging.disable(logging.NOTSET)
    served = {(method, _shape(rule.rule)) for rule in app.url_map.iter_rules()
              for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    served = {(m, p) for m, p in served if p not in UNDOCUMENTED}
    doc = document(Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"}))
    documented = {(method.upper(), _shape(path)) for path, ops in doc["paths"].items()
                  for method in ops}
    assert served - documented == set(), "routes missing from /openapi.json"
    assert documented - served == set(), "documented routes the app does not serve"

