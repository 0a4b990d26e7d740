"""Start the loopback fake provider (`tests.fakeprovider`) every system in a run streams from."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import procs
from bench.procs import Proc


def start_fake_provider() -> tuple[Proc, str]:
    """Start the fake provider; return it and its OpenAI base URL."""
    port_file = Path(tempfile.mkstemp(prefix="bench-provider-")[1])
    port_file.write_text("")
    argv = procs.python_argv("-m", "tests.fakeprovider", "--host", "127.0.0.1", "--port", "0",
                             "--port-file", str(port_file))
    proc = procs.spawn("fakeprovider", argv)
    port = procs.wait_port_file(port_file, proc.popen)
    port_file.unlink()
    return proc, f"http://127.0.0.1:{port}/v1"
