"""The size guard's estimate beside the measured derive + verify time, for every op family
and for defined layers.

    python benchmarks/bench_symbolic.py            # every case
    python benchmarks/bench_symbolic.py conv2d     # the cases whose op name contains conv2d

For each case: the op's steps (``Op.cost``), the estimate (``Op.seconds`` = steps ×
``us_per_step``), the measured build and verify times and the measured microseconds per step
(what ``us_per_step`` is calibrated from: the largest of an op's cases, rounded up).  The
guard (:func:`derivgrad.ops.base.check_size`) is bypassed so that the cases it would refuse
are measured too.  Quote the machine's load (``uptime``) with the figures.
"""

import os
import sys
import time

import derivgrad
from derivgrad.registry import get

CONV = "y[n, o, i, j] += x[n, c, i + p, j + q] * w[o, c, p, q]"
NORM = "\n".join(
    [
        "m[r] += x[r, j] / 8",
        "v[r] += (x[r, j] - m[r]) ** 2 / 8",
        "y[r, j] = (x[r, j] - m[r]) / sqrt(v[r] + 1)",
    ]
)

# issue 28's researcher layers at their example shapes: group norm, batch norm and a residual
# block (convolution, bias, ReLU and the skip, on an input padded outside)
GROUP_NORM = "\n".join(
    [
        "mu[n, g] += x[n, g, c, h, w] / (len(c) * len(h) * len(w))",
        "var[n, g] += (x[n, g, c, h, w] - mu[n, g])**2 / (len(c) * len(h) * len(w))",
        "y[n, g, c, h, w] = gamma[g, c] * (x[n, g, c, h, w] - mu[n, g]) "
        "/ sqrt(var[n, g] + 1e-5) + beta[g, c]",
    ]
)
BATCH_NORM = "\n".join(
    [
        "mu[c] += x[n, c, h, w] / (len(n) * len(h) * len(w))",
        "var[c] += (x[n, c, h, w] - mu[c])**2 / (len(n) * len(h) * len(w))",
        "y[n, c, h, w] = gamma[c] * (x[n, c, h, w] - mu[c]) / sqrt(var[c] + 1e-5) + beta[c]",
    ]
)
RESIDUAL = "\n".join(
    [
        "h[n, o, i, j] += x[n, c, i + u, j + v] * w[o, c, u, v]",
        "y[n, o, i, j] = max(h[n, o, i, j] + b[o], 0) + x[n, o, i + 1, j + 1]",
    ]
)
DEFINED = {
    "define conv": CONV,
    "define norm": NORM,
    "define group norm": GROUP_NORM,
    "define batch norm": BATCH_NORM,
    "define residual": RESIDUAL,
}

CASES = [
    ("conv2d", dict(input=(12, 12), kernel=(3, 3), padding=1)),
    ("conv2d", dict(input=(28, 28), kernel=(5, 5))),
    ("conv2d", dict(input=(16, 16), kernel=(5, 5), channels=2, filters=2)),
    ("conv2d", dict(input=(24, 24), kernel=(5, 5), channels=3, filters=4)),
    ("conv1d", dict(input=200, kernel=5, channels=2, filters=2)),
    ("linear", dict(features=30, outputs=30)),
    ("relu", dict(features=2000)),
    ("sigmoid", dict(features=300)),
    ("flatten", dict(input=(20, 20), channels=4)),
    ("softmax", dict(classes=20)),
    ("softmax", dict(classes=40)),
    ("softmax_cross_entropy", dict(classes=60)),
    ("logistic_regression", dict(classes=10, features=10)),
    ("residual", dict(features=8, hidden=8)),
    ("maxpool2d", dict(input=(24, 24), kernel=2)),
    ("avgpool2d", dict(input=(24, 24), kernel=2)),
    ("batchnorm2d", dict(batch=2, channels=2, input=(3, 3))),
    ("squared_error", dict(input=(20, 20))),
    ("lenet", dict()),
    ("define conv", dict(x=(1, 1, 12, 12), w=(1, 1, 3, 3))),
    ("define norm", dict(x=(4, 8))),
    ("define group norm", dict(x=(2, 2, 2, 3, 3), gamma=(2, 2), beta=(2, 2))),
    ("define batch norm", dict(x=(2, 3, 3, 3), gamma=(3,), beta=(3,))),
    ("define residual", dict(x=(2, 3, 10, 10), w=(3, 3, 3, 3), b=(3,))),
]


def main(select: str = "") -> None:
    print(os.popen("uptime").read().strip())
    print(
        f"{'op':>22s} {'parameters':<44s} {'steps':>9s} {'estimate s':>10s} "
        f"{'build s':>8s} {'verify s':>8s} {'total s':>8s} {'µs/step':>8s}"
    )
    for name, params in CASES:
        if select not in name:
            continue
        if name.startswith("define"):
            op = derivgrad.define(DEFINED[name], **params)
        else:
            op = get(name)
        steps = op.cost(**params)
        est = op.seconds(**params)
        t0 = time.perf_counter()
        d = op.build(**params)
        t1 = time.perf_counter()
        d.verify()
        t2 = time.perf_counter()
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        print(
            f"{name:>22s} {shown:<44s} {steps:>9,d} {est:>10.2f} {t1 - t0:>8.2f} "
            f"{t2 - t1:>8.2f} {t2 - t0:>8.2f} {1e6 * (t2 - t0) / steps:>8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
