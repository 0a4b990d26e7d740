"""The `spool batch` CLI as a user runs it: a real process against a real stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.harness import ROOT, Stack, wait_until

API_KEY = "sk-cli-test-0123456789"


@pytest.fixture(scope="module")
def cstack(redis_server: Any) -> Iterator[Stack]:
    shared = Stack(redis_server.url, {
        "SPOOL_API_KEYS": f"cli:{API_KEY}", "SPOOL_SECRET_KEY": "c" * 40,
        "SPOOL_WEB_GRACE_S": "2", "SPOOL_WORKER_SLOTS": "4"})
    shared.start_web()
    shared.start_worker()
    yield shared
    shared.close()


def cli_env(stack: Stack) -> dict[str, str]:
    return {**os.environ, "SPOOL_URL": stack.base_url, "SPOOL_API_KEY": API_KEY,
            "PYTHONPATH": str(ROOT)}


def spool(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spool.cli", *args], env=cli_env(stack),
                          capture_output=True, text=True, timeout=120)


def write_rows(path: Path, n: int, mock: dict[str, Any]) -> Path:
    with path.open("w") as out:
        for i in range(n):
            out.write(json.dumps({"custom_id": f"row-{i}",
                                  "messages": [{"role": "user", "content": f"q{i}"}],
                                  "mock": {"text": f"answer {i}", **mock}}) + "\n")
    return path


def test_submit_status_results(cstack: Stack, tmp_path: Path) -> None:
    rows = write_rows(tmp_path / "rows.jsonl", 20, {"tokens_per_second": 0, "ttft_ms": 0})
    done = spool(cstack, "batch", "submit", str(rows), "--idempotency-key", "cli-1")
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.split()[1].rstrip(":")
    assert done.stdout.startswith(f"submitted {batch_id}: 20 rows")
    assert f"{batch_id} completed: 20 completed, 0 failed, 0 cancelled of 20" in done.stdout
    assert "20/20" in done.stderr  # the progress bar reached the end
    again = spool(cstack, "batch", "submit", str(rows), "--idempotency-key", "cli-1",
                  "--no-watch")
    assert again.stdout.startswith(f"submitted {batch_id}: 20 rows")  # same batch
    status = spool(cstack, "batch", "status", batch_id)
    assert status.returncode == 0 and f"{batch_id}  completed" in status.stdout
    assert "completed  20" in status.stdout
    raw = json.loads(spool(cstack, "batch", "status", batch_id, "--json").stdout)
    assert raw["status"] == "completed" and raw["total"] == 20
    out = tmp_path / "out.jsonl"
    fetched = spool(cstack, "batch", "results", batch_id, "-o", str(out))
    assert fetched.returncode == 0 and "wrote 20 results" in fetched.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["custom_id"]: line["text"] for line in lines} == {
        f"row-{i}": f"answer {i}" for i in range(20)}


def test_ctrl_c_leaves_the_batch_running(cstack: Stack, tmp_path: Path) -> None:
    rows = write_rows(tmp_path / "slow.jsonl", 30, {"tokens_per_second": 0, "ttft_ms": 100})
    proc = subprocess.Popen([sys.executable, "-m", "spool.cli", "batch", "submit", str(rows)],
                            env=cli_env(cstack), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first.startswith("submitted batch_"), first
    batch_id = first.split()[1].rstrip(":")
    url = f"{cstack.base_url}/v1/batches/{batch_id}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    wait_until(lambda: requests.get(url, headers=headers, timeout=5).json()["completed"] >= 2,
               30, 0.05, "progress")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"batch {batch_id} keeps running" in err
    assert f"spool batch watch {batch_id}" in err
    assert "Traceback" not in err
    info = requests.get(url, headers=headers, timeout=5).json()
    assert info["status"] == "in_progress" and info["cancelled"] == 0
    watched = spool(cstack, "batch", "watch", batch_id)
    assert watched.returncode == 0, watched.stderr
    assert f"{batch_id} completed: 30 completed" in watched.stdout


def test_cli_errors_are_one_line(cstack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "a", "messages": [{"role": "user", "content": "x"}]}\n'
                   '{"custom_id": "b"}\n')
    failed = spool(cstack, "batch", "submit", str(bad))
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "spool: HTTP 400 invalid_request: row 1 (line 2): requests.1.messages: Field required"
        " (requests.1.messages)")
    missing = spool(cstack, "batch", "status", "batch_" + "x" * 24)
    assert missing.returncode == 1 and "HTTP 404 not_found" in missing.stderr
    nofile = spool(cstack, "batch", "submit", str(tmp_path / "nope.jsonl"))
    assert nofile.returncode == 1 and "cannot read" in nofile.stderr
    env = {**cli_env(cstack), "SPOOL_API_KEY": "wrong"}
    unauthorized = subprocess.run([sys.executable, "-m", "spool.cli", "batch", "status",
                                   "batch_" + "x" * 24], env=env, capture_output=True,
                                  text=True, timeout=60)
    assert "HTTP 401 unauthorized" in unauthorized.stderr


def test_watch_resumes_when_the_web_process_dies(cstack: Stack, tmp_path: Path) -> None:
    rows = write_rows(tmp_path / "cut.jsonl", 30, {"tokens_per_second": 0, "ttft_ms": 200})
    submitted = spool(cstack, "batch", "submit", str(rows), "--no-watch")
    batch_id = submitted.stdout.split()[1].rstrip(":")
    watcher = subprocess.Popen([sys.executable, "-m", "spool.cli", "batch", "watch", batch_id],
                               env=cli_env(cstack), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert watcher.stderr is not None
    seen: list[bytes] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(watcher.stderr.read1, b"")))
    reader.start()
    wait_until(lambda: b"failed=0" in b"".join(seen), 30, 0.05, "the bar to show progress")
    port = cstack.webs[0].port
    for child in psutil.Process(cstack.webs[0].proc.pid).children(recursive=True):
        child.kill()  # the gunicorn worker holding the stream, then its arbiter
    cstack.webs[0].kill()
    cstack.webs.pop(0)
    cstack.start_web(port=port)
    out_bytes, _ = watcher.communicate(timeout=60)
    reader.join(10)
    out, err = out_bytes.decode(), b"".join(seen).decode()
    assert watcher.returncode == 0, err
    assert "stream interrupted" in err and "resuming after event" in err
    assert f"{batch_id} completed: 30 completed" in out


def test_submit_a_json_file_without_watching(cstack: Stack, tmp_path: Path) -> None:
    body = {"requests": [{"custom_id": "only", "messages": [{"role": "user", "content": "q"}],
                          "mock": {"text": "from a .json file", "ttft_ms": 0}}],
            "metadata": {"source": "cli"}}
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(body))
    sent = spool(cstack, "batch", "submit", str(path), "--no-watch")
    assert sent.returncode == 0, sent.stderr
    batch_id = sent.stdout.split()[1].rstrip(":")
    assert f"spool batch watch {batch_id}" in sent.stdout
    wait_until(lambda: json.loads(spool(cstack, "batch", "status", batch_id, "--json").stdout)[
        "status"] == "completed", 30, 0.2, "the batch to complete")
    info = json.loads(spool(cstack, "batch", "status", batch_id, "--json").stdout)
    assert info["metadata"] == {"source": "cli"}
    printed = spool(cstack, "batch", "results", batch_id)  # to stdout
    assert json.loads(printed.stdout)["text"] == "from a .json file"
