"""The worker's collector settings, applied once its providers are built."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT
from worker.main import GC_YOUNG_THRESHOLD

CHECK = """
import gc
from worker.main import tune_gc
default = gc.get_threshold()
tune_gc()
print(gc.get_freeze_count() > 1000, gc.get_threshold() == (%d,) + default[1:])
"""


def test_tune_gc_freezes_what_was_built_and_raises_the_young_threshold() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK % GC_YOUNG_THRESHOLD], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["True", "True"]
