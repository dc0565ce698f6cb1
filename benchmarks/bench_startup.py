"""First-call (compile) time and warm-start time of the kernels, each in a fresh process.

    python benchmarks/bench_startup.py

Cold: an empty ``NUMBA_CACHE_DIR`` so every kernel used compiles.  Warm: the same cache
directory again, so kernels load from disk.  Reported: seconds from interpreter start to
the first conv2d result, and to a full LeNet-layer forward/backward (every kernel the
training step uses).
"""

import os
import subprocess
import sys
import tempfile
import time

PROBE = r"""
import time; t0 = time.perf_counter()
import numpy as np; from derivgrad import kernels as K
x = np.zeros((2, 1, 8, 8), np.float32); w = np.zeros((3, 1, 3, 3), np.float32)
y = K.conv2d_forward(x, w); t1 = time.perf_counter()
dx, dw, db = K.conv2d_backward(y, x, w)
p, i = K.maxpool2d_forward(y, 2); K.maxpool2d_backward(p, i, y.shape)
h = K.relu_forward(p.reshape(2, -1)); K.relu_backward(h, h)
lab = np.zeros(2, int)
l, pr = K.softmax_cross_entropy_forward(h, lab); K.softmax_cross_entropy_backward(pr, lab)
t2 = time.perf_counter()
print(f"{t1 - t0:.2f} {t2 - t0:.2f}")
"""


def run_once(cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t
    first, all_ = map(float, out.stdout.split())
    return first, all_, wall


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold (compile)", "warm (cache on disk)", "warm again"):
            first, all_, wall = run_once(cache)
            print(
                f"{label:22s} first conv2d result {first:6.2f} s   LeNet kernels {all_:6.2f} s   "
                f"process wall {wall:6.2f} s"
            )
