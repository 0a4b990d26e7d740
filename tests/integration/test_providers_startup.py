"""A bad provider configuration stops the real web and worker processes at startup.

Each mistake gets one line on stderr that names the variable (and never
echoes a key); several mistakes get several lines. The same parsing is
covered case by case, in-process, by tests/unit/test_provider_config.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness import ROOT, free_port

LOCAL = {"SPOOL_PROVIDERS": "local", "SPOOL_PROVIDER_LOCAL_BASE_URL": "http://127.0.0.1:8000/v1",
         "SPOOL_PROVIDER_LOCAL_MODEL": "llama3.2", "SPOOL_PROVIDER_LOCAL_API_KEY": "sk-secret-9"}
CASES = {
    "unknown kind": ({**LOCAL, "SPOOL_PROVIDER_LOCAL_KIND": "vllm"},
                     "SPOOL_PROVIDER_LOCAL_KIND must be openai or anthropic, got 'vllm'"),
    "missing base URL": ({**LOCAL, "SPOOL_PROVIDER_LOCAL_BASE_URL": ""},
                         "SPOOL_PROVIDER_LOCAL_BASE_URL must be set"),
    "bad URL": ({**LOCAL, "SPOOL_PROVIDER_LOCAL_BASE_URL": "127.0.0.1:8000/v1"},
                "SPOOL_PROVIDER_LOCAL_BASE_URL must be an http:// or https:// URL"),
    "bad number": ({**LOCAL, "SPOOL_PROVIDER_LOCAL_RETRY_ATTEMPTS": "many"},
                   "SPOOL_PROVIDER_LOCAL_RETRY_ATTEMPTS must be an integer, got 'many'"),
    "bad global retry": ({"SPOOL_RETRY_BASE_S": "soon"},
                         "SPOOL_RETRY_BASE_S must be a number, got 'soon'"),
    "bad name": ({"SPOOL_PROVIDERS": "Local_1"},
                 "SPOOL_PROVIDERS: 'Local_1' is not a valid provider name"),
    "missing model": ({**LOCAL, "SPOOL_PROVIDER_LOCAL_MODEL": ""},
                      "SPOOL_PROVIDER_LOCAL_MODEL must be set"),
    "typo": ({**LOCAL, "SPOOL_PROVIDER_LOCAL_BASEURL": "http://x"},
             "SPOOL_PROVIDER_LOCAL_BASEURL is not a provider setting"),
    "gemini without key": ({"SPOOL_PROVIDERS": "gemini"}, "GEMINI_API_KEY must be set"),
    "unknown default": ({"SPOOL_DEFAULT_PROVIDER": "local"},
                        "SPOOL_DEFAULT_PROVIDER: unknown provider 'local'"),
    "default not configured": ({"SPOOL_DEFAULT_PROVIDER": "openai"},
                               "SPOOL_DEFAULT_PROVIDER: provider 'openai' is not configured"),
    "unknown fallback": ({**LOCAL, "SPOOL_FALLBACK_PROVIDERS": "local,openia"},
                         "SPOOL_FALLBACK_PROVIDERS: unknown provider 'openia'"),
}
COMMANDS = {
    "web": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
    "worker": [sys.executable, "-m", "worker"],
}


def start(process: str, config: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPOOL_", "OPENAI_", "ANTHROPIC_", "GEMINI_"))}
    env.update(config, PYTHONPATH=str(ROOT), PORT=str(free_port()),
               REDIS_URL="redis://127.0.0.1:1/0")  # never reached: config fails first
    return subprocess.run(COMMANDS[process], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


# Both processes share Settings.from_env: the web gets every case, the worker two.
@pytest.mark.parametrize("process,name", [("web", name) for name in CASES]
                         + [("worker", "unknown kind"), ("worker", "bad number")])
def test_bad_provider_configuration_refuses_to_start(process: str, name: str) -> None:
    config, message = CASES[name]
    proc = start(process, config)
    assert proc.returncode != 0
    assert f"spool {process}: configuration error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "sk-secret-9" not in proc.stdout + proc.stderr  # keys are never echoed


def test_every_mistake_gets_its_own_line() -> None:
    config = {"SPOOL_PROVIDERS": "local,Bad", "SPOOL_PROVIDER_LOCAL_KIND": "grpc",
              "SPOOL_PROVIDER_LOCAL_MODEL": "m", "SPOOL_PROVIDER_LOCAL_IDLE_TIMEOUT_S": "-1"}
    proc = start("web", config)
    lines = [line for line in proc.stderr.splitlines() if "configuration error" in line]
    assert proc.returncode != 0 and len(lines) == 4, proc.stderr
    for variable in ("SPOOL_PROVIDERS", "SPOOL_PROVIDER_LOCAL_KIND",
                     "SPOOL_PROVIDER_LOCAL_BASE_URL", "SPOOL_PROVIDER_LOCAL_IDLE_TIMEOUT_S"):
        assert any(line.startswith(f"spool web: configuration error: {variable}")
                   for line in lines), (variable, lines)
