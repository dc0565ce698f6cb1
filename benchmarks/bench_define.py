"""Layers written with ``derivgrad.define`` against the same layers in PyTorch (CPU).

    env -u OPENBLAS_CORETYPE nice -n 0 python benchmarks/bench_define.py [--repeats 7]
        [--only NAME,...] [--threads 1,2] [--no-startup]

For each layer of :data:`LAYERS` (float32, realistic sizes), at each thread count: the
median time of forward + backward (every input's gradient), derivgrad's generated kernels
(``op.vjp`` then the pullback, so the forward is not run twice) and PyTorch's autograd, timed
interleaved (one derivgrad call, one PyTorch call, repeated) so that a load that comes and
goes on a shared machine hits both alike; the ratio derivgrad / PyTorch (below 1: faster).
Each layer's outputs are compared with PyTorch's first (largest relative difference printed),
so a fast wrong kernel cannot pass unnoticed.

Then, in fresh processes with an empty kernel cache, each layer's first call (define, write the
module, Numba's compile of forward and backward for float32, run them on the example shapes)
and a cached start (the same in a new process reading the cache), imports counted apart.

Set ``OPENBLAS_CORETYPE`` as the machine does, or unset it (``env -u``): NumPy's and SciPy's
OpenBLAS run AVX2 kernels on an AVX-512 CPU when it says Haswell (the contractions' GEMMs).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np

# name -> (definition, realistic shapes, example shapes, ranges, PyTorch function of the inputs)
# the PyTorch functions are looked up by name in torch_layers() (torch imported lazily)
CONV = "y[n, o, i, j] += x[n, c, i + u, j + v] * w[o, c, u, v]"
LAYERS: dict[str, tuple[str, dict, dict, dict]] = {
    "conv2d 3x3 (16,64,32,32)->64": (
        CONV,
        dict(x=(16, 64, 32, 32), w=(64, 64, 3, 3)),
        dict(x=(2, 3, 6, 6), w=(4, 3, 3, 3)),
        {},
    ),
    "conv2d 3x3 s2 (16,32,64,64)->64": (
        "y[n, o, i, j] += x[n, c, 2*i + u, 2*j + v] * w[o, c, u, v]",
        dict(x=(16, 32, 65, 65), w=(64, 32, 3, 3)),
        dict(x=(2, 3, 7, 7), w=(4, 3, 3, 3)),
        {},
    ),
    "conv2d 3x3 same (16,64,32,32)->64": (
        "y[n, o, i, j] += (x[n, c, i + u - 1, j + v - 1] ?? 0) * w[o, c, u, v]",
        dict(x=(16, 64, 32, 32), w=(64, 64, 3, 3)),
        dict(x=(2, 3, 6, 6), w=(4, 3, 3, 3)),
        {},
    ),
    "conv2d 1x1 (16,64,32,32)->128": (
        "y[n, o, i, j] += x[n, c, i, j] * w[o, c]",
        dict(x=(16, 64, 32, 32), w=(128, 64)),
        dict(x=(2, 3, 4, 4), w=(4, 3)),
        {},
    ),
    "depthwise 3x3 (16,64,32,32)": (
        "y[n, c, i, j] += x[n, c, i + u, j + v] * w[c, u, v]",
        dict(x=(16, 64, 32, 32), w=(64, 3, 3)),
        dict(x=(2, 3, 6, 6), w=(3, 3, 3)),
        {},
    ),
    "conv1d dilated 2 (32,64,256)->64": (
        "y[n, o, i] += x[n, c, i + 2*u] * w[o, c, u]",
        dict(x=(32, 64, 256), w=(64, 64, 3)),
        dict(x=(2, 3, 11), w=(4, 3, 3)),
        {},
    ),
    "linear (256,1024)->1024": (
        "y[n, o] += x[n, i] * w[o, i]",
        dict(x=(256, 1024), w=(1024, 1024)),
        dict(x=(3, 4), w=(5, 4)),
        {},
    ),
    "bmm (32,128,64)x(32,64,128)": (
        "y[b, i, j] += a[b, i, k] * c[b, k, j]",
        dict(a=(32, 128, 64), c=(32, 64, 128)),
        dict(a=(2, 3, 4), c=(2, 4, 5)),
        {},
    ),
    "attention scores (32,128,64)": (
        "s[b, i, j] += q[b, i, d] * k[b, j, d] / sqrt(len(d))",
        dict(q=(32, 128, 64), k=(32, 128, 64)),
        dict(q=(2, 3, 4), k=(2, 5, 4)),
        {},
    ),
    "MLP 512-1024-512 GELU(tanh), batch 256": (
        """h[n, f] += x[n, i] * w1[f, i]
           g[n, f] = 0.5 * h[n, f] * (1 + tanh(0.7978845608 * (h[n, f] + 0.044715 * h[n, f]**3)))
           y[n, o] += g[n, f] * w2[o, f]""",
        dict(x=(256, 512), w1=(1024, 512), w2=(512, 1024)),
        dict(x=(2, 3), w1=(4, 3), w2=(3, 4)),
        {},
    ),
    "residual: conv 3x3 + skip (16,64,32,32)": (
        """h[n, o, i, j] += x[n, c, i + u, j + v] * w[o, c, u, v]
           y[n, o, i, j] = h[n, o, i, j] + x[n, o, i + 1, j + 1]""",
        dict(x=(16, 64, 32, 32), w=(64, 64, 3, 3)),
        dict(x=(2, 3, 6, 6), w=(3, 3, 3, 3)),
        {},
    ),
    "layer norm (4096,512)": (
        """mu[n]   += x[n, d] / len(d)
           var[n]  += (x[n, d] - mu[n])**2 / len(d)
           y[n, d]  = g[d] * (x[n, d] - mu[n]) / sqrt(var[n] + 1e-5) + b[d]""",
        dict(x=(4096, 512), g=(512,), b=(512,)),
        dict(x=(3, 4), g=(4,), b=(4,)),
        {},
    ),
    "RMS norm (4096,512)": (
        """ms[n]   += x[n, d]**2 / len(d)
           y[n, d]  = g[d] * x[n, d] / sqrt(ms[n] + 1e-6)""",
        dict(x=(4096, 512), g=(512,)),
        dict(x=(3, 4), g=(4,)),
        {},
    ),
    "softmax rows (4096,512)": (
        """e[n, d] = exp(x[n, d])
           z[n]   += e[n, d]
           y[n, d] = e[n, d] / z[n]""",
        dict(x=(4096, 512)),
        dict(x=(3, 4)),
        {},
    ),
    "GELU erf (4096,1024)": (
        "y[n, d] = 0.5 * x[n, d] * (1 + erf(x[n, d] * 0.7071067811865476))",
        dict(x=(4096, 1024)),
        dict(x=(3, 4)),
        {},
    ),
    "GELU tanh (4096,1024)": (
        "y[n, d] = 0.5 * x[n, d] * (1 + tanh(0.7978845608 * (x[n, d] + 0.044715 * x[n, d]**3)))",
        dict(x=(4096, 1024)),
        dict(x=(3, 4)),
        {},
    ),
    "softplus (4096,1024)": (
        "y[n, d] = log(1 + exp(x[n, d]))",
        dict(x=(4096, 1024)),
        dict(x=(3, 4)),
        {},
    ),
    "SiLU (4096,1024)": (
        "y[n, d] = x[n, d] * sigmoid(x[n, d])",
        dict(x=(4096, 1024)),
        dict(x=(3, 4)),
        {},
    ),
    "max pool 2x2 s2 (32,64,32,32)": (
        "y[n, c, i, j] = max(max(x[n, c, 2*i, 2*j], x[n, c, 2*i, 2*j + 1]), "
        "max(x[n, c, 2*i + 1, 2*j], x[n, c, 2*i + 1, 2*j + 1]))",
        dict(x=(32, 64, 32, 32)),
        dict(x=(2, 2, 5, 6)),
        {},
    ),
    "max pool 3x3 s2 (32,64,33,33)": (
        "y[n, c, i, j] = max(max(max(x[n, c, 2*i, 2*j], x[n, c, 2*i, 2*j + 1]), "
        "max(x[n, c, 2*i, 2*j + 2], x[n, c, 2*i + 1, 2*j])), "
        "max(max(max(x[n, c, 2*i + 1, 2*j + 1], x[n, c, 2*i + 1, 2*j + 2]), "
        "max(x[n, c, 2*i + 2, 2*j], x[n, c, 2*i + 2, 2*j + 1])), x[n, c, 2*i + 2, 2*j + 2]))",
        dict(x=(32, 64, 33, 33)),
        dict(x=(2, 2, 7, 7)),
        {},
    ),
    "avg pool 2x2 s2 (32,64,32,32)": (
        "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] / 4",
        dict(x=(32, 64, 32, 32)),
        dict(x=(2, 2, 6, 6)),
        {"u": 2, "v": 2},
    ),
    "MSE loss (4096,1024)": (
        "L[] += (x[n, d] - t[n, d])**2 / len(n)",
        dict(x=(4096, 1024), t=(4096, 1024)),
        dict(x=(3, 4), t=(3, 4)),
        {},
    ),
    "cosine similarity (4096,512)": (
        """ab[n] += a[n, d] * b[n, d]
           aa[n] += a[n, d] * a[n, d]
           bb[n] += b[n, d] * b[n, d]
           y[n]   = ab[n] / sqrt(aa[n] * bb[n])""",
        dict(a=(4096, 512), b=(4096, 512)),
        dict(a=(3, 4), b=(3, 4)),
        {},
    ),
}


def torch_layers() -> dict:
    import torch
    import torch.nn.functional as F

    def gelu_tanh(x):
        return 0.5 * x * (1 + torch.tanh(0.7978845608 * (x + 0.044715 * x**3)))

    return {
        "conv2d 3x3 (16,64,32,32)->64": lambda x, w: F.conv2d(x, w),
        "conv2d 3x3 s2 (16,32,64,64)->64": lambda x, w: F.conv2d(x, w, stride=2),
        "conv2d 3x3 same (16,64,32,32)->64": lambda x, w: F.conv2d(x, w, padding=1),
        "conv2d 1x1 (16,64,32,32)->128": lambda x, w: F.conv2d(x, w[:, :, None, None]),
        "depthwise 3x3 (16,64,32,32)": lambda x, w: F.conv2d(x, w[:, None], groups=w.shape[0]),
        "conv1d dilated 2 (32,64,256)->64": lambda x, w: F.conv1d(x, w, dilation=2),
        "linear (256,1024)->1024": lambda x, w: x @ w.T,
        "bmm (32,128,64)x(32,64,128)": lambda a, c: torch.bmm(a, c),
        "attention scores (32,128,64)": lambda q, k: q @ k.transpose(1, 2) / q.shape[2] ** 0.5,
        "MLP 512-1024-512 GELU(tanh), batch 256": lambda x, w1, w2: gelu_tanh(x @ w1.T) @ w2.T,
        "residual: conv 3x3 + skip (16,64,32,32)": lambda x, w: (
            F.conv2d(x, w) + x[:, :, 1:-1, 1:-1]
        ),
        "layer norm (4096,512)": lambda x, g, b: F.layer_norm(x, (x.shape[1],), g, b, 1e-5),
        "RMS norm (4096,512)": lambda x, g: F.rms_norm(x, (x.shape[1],), g, 1e-6),
        "softmax rows (4096,512)": lambda x: torch.softmax(x, dim=1),
        "GELU erf (4096,1024)": lambda x: F.gelu(x),
        "GELU tanh (4096,1024)": lambda x: F.gelu(x, approximate="tanh"),
        "softplus (4096,1024)": lambda x: F.softplus(x),
        "SiLU (4096,1024)": lambda x: F.silu(x),
        "max pool 2x2 s2 (32,64,32,32)": lambda x: F.max_pool2d(x, 2),
        "max pool 3x3 s2 (32,64,33,33)": lambda x: F.max_pool2d(x, 3, 2),
        "avg pool 2x2 s2 (32,64,32,32)": lambda x: F.avg_pool2d(x, 2),
        "MSE loss (4096,1024)": lambda x, t: ((x - t) ** 2).sum() / x.shape[0],
        "cosine similarity (4096,512)": lambda a, b: F.cosine_similarity(a, b, dim=1, eps=0.0),
    }


def _inputs(shapes: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def bench(names: list[str], threads: list[int], repeats: int) -> None:
    import numba
    import torch

    import derivgrad
    from derivgrad.bench.kernels import median_pair

    tl = torch_layers()
    rng = np.random.default_rng(0)
    print(
        f"{'layer (float32, forward + backward)':44s} {'thr':>3s} {'derivgrad ms':>12s} "
        f"{'torch ms':>9s} {'ratio':>6s} {'max rel diff':>12s}"
    )
    for name in names:
        spec, shapes, example, ranges = LAYERS[name]
        op = derivgrad.define(spec, ranges=ranges or None, **example)
        x = _inputs(shapes, rng)
        tx = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in x.items()}
        ty = tl[name](*tx.values())
        dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
        tdy = torch.from_numpy(dy.copy())
        y, pullback = op.vjp(**x)
        g = pullback(dy)
        ty.backward(tdy)
        diff = max(
            [_rel(y, ty.detach().numpy())]
            + [_rel(g[k], tx[k].grad.numpy()) for k in x if tx[k].grad is not None]
        )

        def ours() -> None:
            _, pb = op.vjp(**x)
            pb(dy)

        def theirs() -> None:
            for t in tx.values():
                t.grad = None
            tl[name](*tx.values()).backward(tdy)

        for nt in threads:
            numba.set_num_threads(nt)
            torch.set_num_threads(nt)
            # Timed as `derivgrad bench` times its kernels (derivgrad/bench/kernels.py has
            # the measurements): each side's timed call follows 25 ms of its own untimed
            # calls, so the other side's thread pool has stopped spinning and this side's
            # is awake.  Alternated call by call instead, PyTorch's spinning OpenMP threads
            # held the second core while our chunks waited for it (depthwise 3x3 at 2
            # threads: 2.8 ms alone, 5.8 ms right after a PyTorch call).
            ma, mb = median_pair(ours, theirs, repeats)
            print(
                f"{name:44s} {nt:3d} {1e3 * ma:12.1f} {1e3 * mb:9.1f} {ma / mb:6.2f} {diff:12.1e}",
                flush=True,
            )


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


STARTUP = """
import json, sys, time
t = time.perf_counter()
import numpy as np, derivgrad
t1 = time.perf_counter()
spec, example, ranges = json.loads(sys.argv[1])
op = derivgrad.define(spec, ranges=ranges or None, **example)
x = {k: np.ones(v, np.float32) for k, v in example.items()}
y, pullback = op.vjp(**x)
pullback(np.ones(np.shape(y), np.float32))
t2 = time.perf_counter()
print(t1 - t, t2 - t1)
"""


def startup(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(first call in an empty cache, cached start)``, each in a fresh process, as
    ``(imports, define + first forward + first backward, the process's CPU seconds)``."""
    import json

    spec, _, example, ranges = LAYERS[name]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, DERIVGRAD_CACHE_DIR=tmp, NUMBA_CACHE_DIR=tmp + "/numba")

        def run() -> tuple[float, float, float]:
            # CPU seconds of the child (all its threads): less sensitive to a shared
            # machine's load than the wall times it prints
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run(
                [sys.executable, "-c", STARTUP, json.dumps([spec, example, ranges])],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            return float(out[-2]), float(out[-1]), cpu

        return run(), run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--only", default="", help="layers whose name contains one of these words")
    ap.add_argument("--no-startup", action="store_true", help="skip the first-call times")
    ap.add_argument("--no-speed", action="store_true", help="skip the forward+backward times")
    a = ap.parse_args()
    words = [w for w in a.only.split(",") if w]
    names = [n for n in LAYERS if not words or any(w in n for w in words)]
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    if not a.no_speed:
        bench(names, [int(t) for t in a.threads.split(",")], a.repeats)
    if not a.no_startup:
        print(
            f"{'layer: fresh processes, float32':44s} {'imports s':>9s} {'first call s':>12s} "
            f"{'cached start s':>14s} {'first-call CPU s':>16s}"
        )
        for name in names:
            first, warm = startup(name)
            print(
                f"{name:44s} {first[0]:9.2f} {first[1]:12.2f} {warm[1]:14.2f} {first[2]:16.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
