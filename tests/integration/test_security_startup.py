"""Startup refuses a configuration that would run unsafely, with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness import ROOT, free_port

BAD_CONFIGS = {
    "secret missing": {"SPOOL_API_KEYS": "t:k-123"},
    "secret short": {"SPOOL_API_KEYS": "t:k-123", "SPOOL_SECRET_KEY": "x" * 31},
    "secret blank": {"SPOOL_API_KEYS": "t:k-123", "SPOOL_SECRET_KEY": "   "},
}
COMMANDS = {
    "web": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
    "worker": [sys.executable, "-m", "worker"],
}


# Both processes share Settings.from_env; the web gets every case, the worker one.
CASES = [("web", name) for name in BAD_CONFIGS] + [("worker", "secret short")]


@pytest.mark.parametrize("process,name", CASES)
def test_auth_without_a_proper_secret_refuses_to_start(process: str, name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
    env.update(BAD_CONFIGS[name], PYTHONPATH=str(ROOT), PORT=str(free_port()),
               REDIS_URL="redis://127.0.0.1:1/0")  # never reached: config fails first
    proc = subprocess.run(COMMANDS[process], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert f"spool {process}: configuration error: SPOOL_SECRET_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "k-123" not in proc.stdout + proc.stderr  # the key is not echoed back
