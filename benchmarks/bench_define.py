"""Generated kernels of ``derivgrad.define`` against derivgrad's hand-written conv kernels.

    flock /tmp/bench.lock python benchmarks/bench_define.py [--repeats 10] [--threads N]

Two definitions, forward + backward (every input's gradient) each:

* a standard convolution, the LeNet's conv2: ``(64, 20, 12, 12) -> 50 @ 5x5``, against
  ``derivgrad.kernels.conv2d_forward/backward`` (im2col / shifted GEMMs over BLAS);
* a depthwise convolution, stride 2, ``(64, 20, 28, 28)`` with ``(20, 5, 5)`` filters, against
  the same hand-written kernels run one channel at a time (derivgrad has no grouped conv).

Prints the median times and their ratio (generated / hand-written), then, for each
definition, the first-call cost of a variant never seen before (writing the module, Numba's
compile of the forward and the backward) and a warm start from the disk cache in a fresh
process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

STANDARD = "y[n, o, i, j] += x[n, c, i + u, j + v] * w[o, c, u, v]"
DEPTHWISE = "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]"


def _median(f, repeats: int) -> float:
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def bench(repeats: int) -> list[tuple[str, float, float]]:
    import derivgrad
    from derivgrad import kernels as K

    rng = np.random.default_rng(0)
    rows = []
    # standard conv (LeNet conv2)
    x = rng.standard_normal((64, 20, 12, 12))
    w = rng.standard_normal((50, 20, 5, 5))
    op = derivgrad.define(STANDARD, x=(2, 3, 7, 7), w=(4, 3, 3, 3))
    dy = rng.standard_normal((64, 50, 8, 8))

    def gen_std():
        op.forward(x=x, w=w)
        op.backward(dy, x=x, w=w)

    def hand_std():
        K.conv2d_forward(x, w)
        K.conv2d_backward(dy, x, w, bias=False)

    rows.append(
        ("conv2 (64,20,12,12)->50@5x5", _median(gen_std, repeats), _median(hand_std, repeats))
    )
    # depthwise, stride 2
    x = rng.standard_normal((64, 20, 28, 28))
    w = rng.standard_normal((20, 5, 5))
    op = derivgrad.define(DEPTHWISE, x=(2, 3, 7, 7), w=(3, 3, 3))
    dy = rng.standard_normal((64, 20, 12, 12))

    def gen_dw():
        op.forward(x=x, w=w)
        op.backward(dy, x=x, w=w)

    def hand_dw():
        for c in range(20):
            xc, wc = x[:, c : c + 1], w[c][None, None]
            K.conv2d_forward(xc, wc, stride=2)
            K.conv2d_backward(dy[:, c : c + 1], xc, wc, stride=2, bias=False)

    rows.append(
        ("depthwise s2 (64,20,28,28) 5x5", _median(gen_dw, repeats), _median(hand_dw, repeats))
    )
    return rows


STARTUP = """
import time, sys
t = time.perf_counter()
import numpy as np, derivgrad, numba
from derivgrad.notation import define
t1 = time.perf_counter()
w = (4, 3, 3, 3) if "w[o" in sys.argv[1] else (3, 3, 3)
op = define(sys.argv[1], x=(2, 3, 7, 7), w=w)
x = np.ones((2, 3, 7, 7)); w = np.ones(w)
y = op.forward(x=x, w=w)
op.backward(np.ones(y.shape), x=x, w=w)
t2 = time.perf_counter()
print(t1 - t, t2 - t1)
"""


def startup(base: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(first call in a fresh cache, warm start from it), each in a fresh process, as
    ``(imports, define + first forward + first backward)``."""
    # a definition this cache has never seen: a constant nobody else uses
    spec = base + f" * {time.time_ns() % 997 + 2}"
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DERIVGRAD_CACHE_DIR=tmp)

        def run() -> tuple[float, float]:
            out = subprocess.run(
                [sys.executable, "-c", STARTUP, spec],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            return float(out[-2]), float(out[-1])

        return run(), run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        import numba

        numba.set_num_threads(a.threads)
    import numba

    print(f"threads: {numba.get_num_threads()}")
    print(f"{'forward + backward':34s} {'generated ms':>13s} {'hand ms':>9s} {'ratio':>6s}")
    for name, g, h in bench(a.repeats):
        print(f"{name:34s} {1e3 * g:13.1f} {1e3 * h:9.1f} {g / h:6.2f}")
    print("fresh processes; imports (numpy, numba, derivgrad, sympy) counted apart:")
    for name, base in (("conv2", STANDARD), ("depthwise s2", DEPTHWISE)):
        first, warm = startup(base)
        print(
            f"  {name}: first call, empty cache: imports {first[0]:.2f} s, define + codegen + "
            f"compile + first forward + backward {first[1]:.2f} s"
        )
        print(
            f"  {name}: warm start from the disk cache: imports {warm[0]:.2f} s, define + load "
            f"+ first forward + backward {warm[1]:.2f} s"
        )


if __name__ == "__main__":
    main()
