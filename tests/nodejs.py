"""Node.js for the AI SDK tests: the `ai` npm package from tests/js (installed by `make js`).

Locally, a machine without Node or without `make js` having run skips these
tests with a message saying how to get them; with `CI` set that is a failure,
so CI can never go green by silently skipping the AI SDK client.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"
NODE_TIMEOUT_S = 60


def _missing(reason: str) -> None:
    message = f"AI SDK tests need {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: a missing Node.js fails instead of skipping)")
    pytest.skip(message)


def require_node(*packages: str) -> str:
    """The `node` executable with tests/js installed (`ai` and `packages`); skips
    (fails under CI) otherwise."""
    node = shutil.which("node")
    if node is None:
        _missing("Node.js: run `sudo apt-get install -y nodejs npm`, then `make js`")
    for package in ("ai", *packages):
        if not (JS_DIR / "node_modules" / package / "package.json").exists():
            _missing(f"the `{package}` package: run `make js` (npm ci in tests/js)")
    assert node is not None
    return node


def ai_version() -> str:
    """The installed `ai` package's version (reported in failures and docs)."""
    manifest = json.loads((JS_DIR / "node_modules" / "ai" / "package.json").read_text())
    return str(manifest["version"])


def run_script(script: str, config: dict[str, Any], *packages: str) -> dict[str, Any]:
    """Run tests/js/<script> with `config` as its JSON argument; its JSON stdout.
    `packages`: the npm packages it needs besides `ai`."""
    node = require_node(*packages)
    done = subprocess.run([node, str(JS_DIR / script), json.dumps(config)], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=NODE_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{script} (ai {ai_version()}) failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bundle(entry: str, out: Path) -> Path:
    """Bundle tests/js/<entry> for the browser with esbuild; the bundle's path."""
    require_node()
    esbuild = JS_DIR / "node_modules" / ".bin" / "esbuild"
    target = out / Path(entry).name
    subprocess.run([str(esbuild), str(JS_DIR / entry), "--bundle", "--format=iife",
                    "--platform=browser", "--log-level=warning", f"--outfile={target}"],
                   cwd=JS_DIR, check=True, timeout=NODE_TIMEOUT_S)
    return target
