"""The kernel paths of issue 29 item 2 switched off and on in one process, beside PyTorch.

    python benchmarks/bench_paths.py [--threads 1] [--repeats 15] [conv2 stem linear]

"before" runs the same code with the row-shift convolution, the row-block input gradient
and the transposed linear forward switched off (module settings in ``kernels/conv.py`` and
``kernels/linear.py``); "after" as shipped.  The three sides alternate, each call timed warm
after 25 ms of untimed calls; medians of CPU time (``time.process_time``: a second
thread's work counts, a core taken by another process does not) and of wall time.  On a
shared machine read the CPU column; the wall column is the one a quiet machine's bar is
about.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

from derivgrad import kernels as K
from derivgrad.kernels import conv, linear

CASES = {
    "conv2": (64, 20, 12, 12, 50, 5, 1, 0),
    "stem": (8, 3, 224, 224, 64, 7, 2, 3),
}
SETTLE_S = 0.025


def before(f):
    """``f`` with this work's three paths switched off for the call."""
    saved = (
        conv.ROWSHIFT_MIN_ROWS,
        conv.DX_SAMPLE_UNITS,
        conv.DX_ROW_BYTES,
        linear.TRANSPOSED_FORWARD["on"],
    )

    def g():
        conv.ROWSHIFT_MIN_ROWS, conv.DX_SAMPLE_UNITS, conv.DX_ROW_BYTES = 10**9, 10**9, 1 << 40
        linear.TRANSPOSED_FORWARD["on"] = False
        try:
            return f()
        finally:
            conv.ROWSHIFT_MIN_ROWS, conv.DX_SAMPLE_UNITS, conv.DX_ROW_BYTES = saved[:3]
            linear.TRANSPOSED_FORWARD["on"] = saved[3]

    return g


def timed(fns, repeats):
    res = {k: ([], []) for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < SETTLE_S:
                f()
            c, t = time.process_time(), time.perf_counter()
            f()
            res[k][0].append(time.perf_counter() - t)
            res[k][1].append(time.process_time() - c)
    return {
        k: (statistics.median(w) * 1e3, statistics.median(c) * 1e3) for k, (w, c) in res.items()
    }


def sides(torch, name, rng):
    f32 = np.float32
    if name == "linear":
        N, IN, OUT = 64, 2880, 500
        x, w = rng.standard_normal((N, IN)).astype(f32), rng.standard_normal((OUT, IN)).astype(f32)
        b, dy = rng.standard_normal(OUT).astype(f32), rng.standard_normal((N, OUT)).astype(f32)
        xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
        fwd = lambda: K.linear_forward(x, w, b)
        bwd = lambda: K.linear_backward(dy, x, w)
        ref_f = lambda: torch.nn.functional.linear(xt, wt, bt)
        ref_b = lambda: (dyt @ wt, dyt.t() @ xt, dyt.sum(0))
    else:
        N, C, H, W, CO, KS, s, p = CASES[name]
        x = rng.standard_normal((N, C, H, W)).astype(f32)
        w = rng.standard_normal((CO, C, KS, KS)).astype(f32)
        b = rng.standard_normal(CO).astype(f32)
        dy = rng.standard_normal(K.conv2d_forward(x, w, b, s, p).shape).astype(f32)
        xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
        fwd = lambda: K.conv2d_forward(x, w, b, s, p)
        bwd = lambda: K.conv2d_backward(dy, x, w, s, p)
        ref_f = lambda: torch.nn.functional.conv2d(xt, wt, bt, s, p)
        ref_b = lambda: torch.ops.aten.convolution_backward(
            dyt, xt, wt, [CO], [s, s], [p, p], [1, 1], False, [0, 0], 1, [True, True, True]
        )
    return {
        "torch fwd": ref_f,
        "before fwd": before(fwd),
        "after fwd": fwd,
        "torch bwd": ref_b,
        "before bwd": before(bwd),
        "after bwd": bwd,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("cases", nargs="*", default=["conv2", "stem", "linear"])
    a = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_paths: PyTorch is not installed (pip install torch)", file=sys.stderr)
        return 2
    K.set_threads(a.threads)
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    for name in a.cases:
        if name not in (*CASES, "linear"):
            print(f"bench_paths: unknown case {name!r}", file=sys.stderr)
            return 2
        load0 = os.getloadavg()[0]
        r = timed(sides(torch, name, rng), a.repeats)
        print(f"{name}, {a.threads} thread(s), load {load0:.1f} -> {os.getloadavg()[0]:.1f}")
        for side in ("before", "after"):
            cols = []
            for i, what in ((1, "cpu"), (0, "wall")):
                ours = r[f"{side} fwd"][i] + r[f"{side} bwd"][i]
                ref = r["torch fwd"][i] + r["torch bwd"][i]
                cols.append(
                    f"{what} fwd {r[f'{side} fwd'][i] / r['torch fwd'][i]:.2f} "
                    f"bwd {r[f'{side} bwd'][i] / r['torch bwd'][i]:.2f} fwd+bwd {ours / ref:.2f}"
                )
            print(f"  {side:6s} / PyTorch: " + " | ".join(cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
