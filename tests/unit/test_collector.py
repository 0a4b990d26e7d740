"""The collector settings both processes apply once started (`spool.collector`)."""

from __future__ import annotations

import subprocess
import sys

from spool.collector import GC_YOUNG_THRESHOLD
from tests.harness import ROOT

CHECK = """
import gc
from worker.main import tune_gc
default = gc.get_threshold()
tune_gc()
print(gc.get_freeze_count() > 1000, gc.get_threshold() == (%d,) + default[1:])
"""

WEB = """
import gc
import gunicorn.arbiter  # noqa: F401 - what the web process has loaded
from spool.settings import Settings
ns = {"__file__": "gunicorn.conf.py"}
exec(open("gunicorn.conf.py").read(), ns)
default = gc.get_threshold()
from wsgi import app  # noqa: F401 - the app is loaded before post_worker_init runs
ns["post_worker_init"](None)
print(gc.get_freeze_count() > 1000, gc.get_threshold() == (%d,) + default[1:])
"""


def test_tune_gc_freezes_what_was_built_and_raises_the_young_threshold() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK % GC_YOUNG_THRESHOLD], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["True", "True"]


def test_the_web_worker_tunes_it_once_the_app_is_loaded() -> None:
    done = subprocess.run([sys.executable, "-c", WEB % GC_YOUNG_THRESHOLD], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["True", "True"]
