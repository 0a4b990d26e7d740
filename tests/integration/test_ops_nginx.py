"""The deploy guide's nginx config (docs/nginx-spool.conf) streams SSE unbuffered.

Runs Debian's nginx in front of a real web process with the guide's file,
only the ports replaced and a private prefix for pid, logs and temp files.
A reader gets the first event while the generation is still running (a
buffering proxy would hold it back until the end) and resumes through the
proxy with Last-Event-ID.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Api
from tests.harness import ROOT, Stack, free_port, wait_until
from tests.sseclient import read_stream

GUIDE_CONF = ROOT / "docs" / "nginx-spool.conf"


def nginx_config(web_port: int, listen_port: int, prefix: Path) -> str:
    """The guide's config, pointed at this test's ports, wrapped as a full nginx.conf."""
    site = GUIDE_CONF.read_text()
    assert "server 127.0.0.1:5000;" in site and "listen 8080;" in site
    site = site.replace("server 127.0.0.1:5000;", f"server 127.0.0.1:{web_port};")
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{listen_port};")
    temp = "\n".join(f"    {name}_temp_path {prefix}/{name};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
            f"events {{}}\nhttp {{\n    access_log {prefix}/access.log;\n{temp}\n{site}\n}}\n")


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[Api]:
    """This module's client, closed before the stack stops (keep-alive holds shutdown)."""
    client = Api(stack)
    yield client
    client.session.close()


@pytest.fixture(scope="module")
def proxied(stack: Stack) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.fail("nginx is needed for this test (apt-get install nginx)")
    prefix = Path(tempfile.mkdtemp(prefix="spool-nginx-"))
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(stack.webs[0].port or 0, port, prefix))
    subprocess.run([binary, "-t", "-c", str(conf), "-p", str(prefix)], check=True,
                   capture_output=True)
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 10,
                   what="nginx in front of the web process")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def test_first_event_arrives_while_the_generation_runs(proxied: str, api: Api) -> None:
    created = api.create("tick " * 40, mock={"tokens_per_second": 20, "ttft_ms": 0})
    first = read_stream(proxied + created["stream_url"], {}, max_events=2)
    assert first.status == 200
    assert [e.event for e in first.events] == ["status", "status"]  # queued, in_progress
    more = read_stream(proxied + created["stream_url"], {"Last-Event-ID": "2"}, max_events=1)
    assert more.events[0].event == "delta"
    # Had nginx buffered the response, these events would only have come at the end.
    assert api.generation(created["id"])["status"] == "in_progress"
    assert first.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    rest = read_stream(proxied + created["stream_url"],
                       {"Last-Event-ID": str(more.events[0].id)})
    assert rest.events[-1].event == "done"
    text = "".join(e.data["text"] for e in [*more.events, *rest.events] if e.event == "delta")
    assert text == "tick " * 40


def test_request_id_from_nginx_reaches_spool(proxied: str) -> None:
    resp: Any = requests.get(f"{proxied}/readyz", timeout=10)
    assert resp.status_code == 200
    assert len(resp.headers["X-Request-ID"]) == 32  # nginx's $request_id, echoed by Spool
