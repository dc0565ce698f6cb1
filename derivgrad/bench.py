"""Kernel timings side by side with a reference in the same process.

The reference is PyTorch on the CPU when it is importable (same thread count), otherwise a
plain NumPy implementation (sliding windows + tensordot).  Forward and backward are timed
separately, interleaved with the reference, and the median of the repeats is reported.
Used by ``derivgrad bench`` and ``benchmarks/bench_kernels.py``.
"""

import json
import statistics
import time

import numpy as np

from derivgrad import kernels as K

CONV_CASES = [  # (N, C, H, W, C_out, K, stride, pad)
    (64, 1, 28, 28, 20, 5, 1, 0),
    (64, 20, 12, 12, 50, 5, 1, 0),
    (32, 64, 32, 32, 64, 3, 1, 1),
    (8, 3, 224, 224, 64, 7, 2, 3),
]
POOL_CASE = (64, 20, 24, 24)
LINEAR_CASE = (64, 2880, 500)


def _median_pair(ours, ref, repeats):
    """Interleave calls of ``ours`` and ``ref``; return their median seconds."""
    ours()
    if ref:
        ref()
    a, b = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        ours()
        a.append(time.perf_counter() - t)
        if ref:
            t = time.perf_counter()
            ref()
            b.append(time.perf_counter() - t)
    return statistics.median(a), (statistics.median(b) if b else None)


def _torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def _numpy_conv(x, w, s, p):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    win = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::s, ::s]
    return np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def conv_rows(torch, repeats, dtype=np.float32):
    rng = np.random.default_rng(0)
    rows = []
    for case in CONV_CASES:
        N, C, H, W, CO, KS, s, p = case
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
        w = rng.standard_normal((CO, C, KS, KS)).astype(dtype)
        b = rng.standard_normal(CO).astype(dtype)
        y = K.conv2d_forward(x, w, b, s, p)
        dy = rng.standard_normal(y.shape).astype(dtype)
        flops = 2.0 * y.size * C * KS * KS
        if torch is not None:
            xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
            ref_f = lambda: torch.nn.functional.conv2d(xt, wt, bt, s, p)
            ref_b = lambda: torch.ops.aten.convolution_backward(
                dyt, xt, wt, [CO], [s, s], [p, p], [1, 1], False, [0, 0], 1, [True, True, True]
            )
        else:
            ref_f = lambda: _numpy_conv(x, w, s, p) + b[:, None, None]
            ref_b = None
        tf, rf = _median_pair(lambda: K.conv2d_forward(x, w, b, s, p), ref_f, repeats)
        tb, rb = _median_pair(lambda: K.conv2d_backward(dy, x, w, s, p), ref_b, repeats)
        rows.append(
            dict(
                case=f"conv2d {case}",
                fwd_ms=tf * 1e3,
                bwd_ms=tb * 1e3,
                ref_fwd_ms=rf * 1e3,
                ref_bwd_ms=None if rb is None else rb * 1e3,
                gflops_fwd=flops / tf / 1e9,
                gflops_bwd=2 * flops / tb / 1e9,
            )
        )
    return rows


def pool_row(torch, repeats, dtype=np.float32):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(POOL_CASE).astype(dtype)
    y, idx = K.maxpool2d_forward(x, 2)
    dy = rng.standard_normal(y.shape).astype(dtype)
    if torch is not None:
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        _, it = torch.nn.functional.max_pool2d(xt, 2, return_indices=True)
        ref_f = lambda: torch.nn.functional.max_pool2d(xt, 2, return_indices=True)
        ref_b = lambda: torch.ops.aten.max_pool2d_with_indices_backward(
            dyt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, it
        )
    else:
        ref_f = lambda: x.reshape(x.shape[0], x.shape[1], 12, 2, 12, 2).max(axis=(3, 5))
        ref_b = None
    tf, rf = _median_pair(lambda: K.maxpool2d_forward(x, 2), ref_f, repeats)
    tb, rb = _median_pair(lambda: K.maxpool2d_backward(dy, idx, x.shape), ref_b, repeats)
    return dict(
        case=f"maxpool2d 2x2/2 {POOL_CASE}",
        fwd_ms=tf * 1e3,
        bwd_ms=tb * 1e3,
        ref_fwd_ms=rf * 1e3,
        ref_bwd_ms=None if rb is None else rb * 1e3,
    )


def linear_row(torch, repeats, dtype=np.float32):
    rng = np.random.default_rng(2)
    N, IN, OUT = LINEAR_CASE
    x = rng.standard_normal((N, IN)).astype(dtype)
    w = rng.standard_normal((OUT, IN)).astype(dtype)
    b = rng.standard_normal(OUT).astype(dtype)
    dy = rng.standard_normal((N, OUT)).astype(dtype)
    flops = 2.0 * N * IN * OUT
    if torch is not None:
        xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
        ref_f = lambda: torch.nn.functional.linear(xt, wt, bt)
        ref_b = lambda: (dyt @ wt, dyt.t() @ xt, dyt.sum(0))
    else:
        ref_f, ref_b = (lambda: x @ w.T + b), None
    tf, rf = _median_pair(lambda: K.linear_forward(x, w, b), ref_f, repeats)
    tb, rb = _median_pair(lambda: K.linear_backward(dy, x, w), ref_b, repeats)
    return dict(
        case=f"linear {IN}->{OUT} batch {N}",
        fwd_ms=tf * 1e3,
        bwd_ms=tb * 1e3,
        ref_fwd_ms=rf * 1e3,
        ref_bwd_ms=None if rb is None else rb * 1e3,
        gflops_fwd=flops / tf / 1e9,
        gflops_bwd=2 * flops / tb / 1e9,
    )


def run(repeats=20, threads=None, as_json=False, out=print):
    import numba

    threads = threads or numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(threads)
    torch = _torch(threads)
    ref = f"PyTorch {torch.__version__}" if torch is not None else "NumPy (PyTorch not installed)"
    rows = conv_rows(torch, repeats) + [pool_row(torch, repeats), linear_row(torch, repeats)]
    for r in rows:
        tot, rtot = r["fwd_ms"] + r["bwd_ms"], None
        if r["ref_bwd_ms"] is not None:
            rtot = r["ref_fwd_ms"] + r["ref_bwd_ms"]
        r["ratio_fwd"] = r["fwd_ms"] / r["ref_fwd_ms"]
        r["ratio_bwd"] = None if r["ref_bwd_ms"] is None else r["bwd_ms"] / r["ref_bwd_ms"]
        r["ratio_total"] = None if rtot is None else tot / rtot
    if as_json:
        out(json.dumps(dict(reference=ref, threads=threads, rows=rows)))
        return rows
    out(f"reference: {ref}; threads: {threads}; float32; median of {repeats} interleaved repeats")
    out("ratio = derivgrad time / reference time (below 1: derivgrad is faster)")
    out(
        f"{'case':44s} {'fwd ms':>8s} {'ref':>8s} {'ratio':>6s} {'bwd ms':>8s} {'ref':>8s} "
        f"{'ratio':>6s} {'f+b ratio':>9s} {'GFLOP/s f/b':>12s}"
    )
    fmt = lambda v, f: "-" if v is None else format(v, f)
    for r in rows:
        gf = "-" if "gflops_fwd" not in r else f"{r['gflops_fwd']:.0f}/{r['gflops_bwd']:.0f}"
        out(
            f"{r['case']:44s} {r['fwd_ms']:8.2f} {r['ref_fwd_ms']:8.2f} {r['ratio_fwd']:6.2f} "
            f"{r['bwd_ms']:8.2f} {fmt(r['ref_bwd_ms'], '8.2f'):>8s} "
            f"{fmt(r['ratio_bwd'], '6.2f'):>6s} "
            f"{fmt(r['ratio_total'], '9.2f'):>9s} {gf:>12s}"
        )
    return rows
