"""Start the loopback fake provider every system in a run streams from."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from bench import procs
from bench.procs import Proc


def fake_provider_module() -> str:
    """The shared `tests.fakeprovider` when present, else the bench's minimal pacer."""
    try:
        if importlib.util.find_spec("tests.fakeprovider") is not None:
            return "tests.fakeprovider"
    except ModuleNotFoundError:
        pass
    return "bench.pacer"


def start_fake_provider() -> tuple[Proc, str]:
    """Start the fake provider; return it and its OpenAI base URL."""
    port_file = Path(tempfile.mkstemp(prefix="bench-provider-")[1])
    port_file.write_text("")
    argv = procs.python_argv("-m", fake_provider_module(), "--host", "127.0.0.1", "--port", "0",
                             "--port-file", str(port_file))
    proc = procs.spawn("fakeprovider", argv)
    port = procs.wait_port_file(port_file, proc.popen)
    port_file.unlink()
    return proc, f"http://127.0.0.1:{port}/v1"
