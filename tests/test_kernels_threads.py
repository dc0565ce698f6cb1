"""The kernels at 3 and 16 threads, as a 16-core host runs them (see ``tests/many_threads.py``).

The rest of the suite runs at this machine's 1 or 2 threads, where the linear layer never
splits its inner dimension in more than two and no reduction has more than two partials;
a bug in those paths (a K-split reduction that drops the third slice, say) would pass it.
Numba's pool size is fixed when Numba starts, so this runs a fresh process with
``NUMBA_NUM_THREADS=16``; it reuses the kernels the suite has compiled (same cache).
"""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "many_threads.py"


def test_every_kernel_agrees_at_3_and_16_threads_with_1():
    env = {**os.environ, "NUMBA_NUM_THREADS": "16"}
    env.pop("DERIVGRAD_THREADS", None)
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "3", "16"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert len(lines) == 4, r.stdout
    for line, (dtype, t) in zip(
        lines, [("float64", 3), ("float64", 16), ("float32", 3), ("float32", 16)], strict=True
    ):
        assert line.startswith(f"{dtype}: ") and line.endswith(f" agree at {t} threads"), line
