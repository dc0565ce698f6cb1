"""Kernel timings side by side with a reference in the same process.

The reference is PyTorch on the CPU when it is importable (same thread count), otherwise a
plain NumPy implementation (sliding windows + tensordot).  Forward and backward are timed
separately, alternating with the reference (each call timed warm, after the other side's
thread pool has gone idle), and the median of the repeats is reported.
Used by ``derivgrad bench`` and ``benchmarks/bench_kernels.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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


# An OpenMP pool keeps its threads spinning for a while after each parallel region: measured
# here at 6-9 ms for Numba's pool and for PyTorch's after a 2-thread stem convolution
# (process CPU time still rising after the call returned).  Timed back to back, one side's
# call ran while the other side's threads still spun on the same cores: at 2 threads our
# stem forward read 50.6 ms instead of 15-18 and PyTorch's 29.6 instead of 18-20.  Sleeping
# the spin out instead let the cores go idle, and the next call paid for waking them (on
# this VM, conv1's 2-thread forward read 1.03 ms against 0.33 ms back to back).  So each
# side first runs untimed calls for ``SETTLE_S``, long enough for the other side's pool to
# stop spinning, and then its timed call: warm and undisturbed, as in a training step.
# (Numba's workers now sleep when idle, kernels/_threads.py: start_pool; PyTorch's still spin.)
SETTLE_S = 0.025


def _warm_time(f):
    t0 = time.perf_counter()
    f()
    while time.perf_counter() - t0 < SETTLE_S:
        f()
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def median_pair(ours, ref, repeats):
    """Alternate ``ours`` and ``ref``, each timed warm once the other side's pool has gone
    idle (``SETTLE_S``); return their median seconds."""
    a, b = [], []
    for _ in range(repeats):
        a.append(_warm_time(ours))
        if ref:
            b.append(_warm_time(ref))
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


def conv_rows(torch: Any, repeats: int, dtype: Any = np.float32) -> list[dict[str, Any]]:
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
        tf, rf = median_pair(lambda: K.conv2d_forward(x, w, b, s, p), ref_f, repeats)
        tb, rb = median_pair(lambda: K.conv2d_backward(dy, x, w, s, p), ref_b, repeats)
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


def pool_row(torch: Any, repeats: int, dtype: Any = np.float32) -> dict[str, Any]:
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
    tf, rf = median_pair(lambda: K.maxpool2d_forward(x, 2), ref_f, repeats)
    tb, rb = median_pair(lambda: K.maxpool2d_backward(dy, idx, x.shape), ref_b, repeats)
    return dict(
        case=f"maxpool2d 2x2/2 {POOL_CASE}",
        fwd_ms=tf * 1e3,
        bwd_ms=tb * 1e3,
        ref_fwd_ms=rf * 1e3,
        ref_bwd_ms=None if rb is None else rb * 1e3,
    )


def linear_row(torch: Any, repeats: int, dtype: Any = np.float32) -> dict[str, Any]:
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
    tf, rf = median_pair(lambda: K.linear_forward(x, w, b), ref_f, repeats)
    tb, rb = median_pair(lambda: K.linear_backward(dy, x, w), ref_b, repeats)
    return dict(
        case=f"linear {IN}->{OUT} batch {N}",
        fwd_ms=tf * 1e3,
        bwd_ms=tb * 1e3,
        ref_fwd_ms=rf * 1e3,
        ref_bwd_ms=None if rb is None else rb * 1e3,
        gflops_fwd=flops / tf / 1e9,
        gflops_bwd=2 * flops / tb / 1e9,
    )


def linear_former_row(torch: Any, repeats: int, dtype: Any = np.float32) -> dict[str, Any]:
    """The linear row with the former batch-row split forced (the before/after comparison)."""
    from derivgrad.kernels import linear

    linear.force_strategy("rows")
    try:
        r = linear_row(torch, repeats, dtype)
    finally:
        linear.force_strategy(None)
    r["case"] += " (former row split)"
    return r


def gemm_ceiling(torch: Any, repeats: int) -> dict[str, Any]:
    """GFLOP/s of one multithreaded sgemm of the linear layer's forward shape
    ``(N, in) @ (in, out)``: NumPy's BLAS, and PyTorch's when installed, at the current count."""
    N, IN, OUT = LINEAR_CASE
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    y = np.empty((N, OUT), np.float32)
    flops = 2.0 * N * IN * OUT
    best = lambda f: min(_times(f, max(repeats, 5)))
    res = dict(numpy=flops / best(lambda: np.matmul(x, w.T, out=y)) / 1e9)
    if torch is not None:
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        res["torch"] = flops / best(lambda: torch.mm(xt, wt.t())) / 1e9
    return res


def _times(f, repeats):
    _warm_time(f)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return out


def kernel_rows(torch: Any, repeats: int) -> list[dict[str, Any]]:
    rows = conv_rows(torch, repeats) + [pool_row(torch, repeats), linear_row(torch, repeats)]
    rows.append(linear_former_row(torch, repeats))
    for r in rows:
        tot, rtot = r["fwd_ms"] + r["bwd_ms"], None
        if r["ref_bwd_ms"] is not None:
            rtot = r["ref_fwd_ms"] + r["ref_bwd_ms"]
        r["ratio_fwd"] = r["fwd_ms"] / r["ref_fwd_ms"]
        r["ratio_bwd"] = None if r["ref_bwd_ms"] is None else r["bwd_ms"] / r["ref_bwd_ms"]
        r["ratio_total"] = None if rtot is None else tot / rtot
    return rows


def measure(
    threads: Sequence[int],
    repeats: int,
    epoch: bool = True,
    data: str | None = None,
    limit: int | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Every kernel row, the GEMM ceiling and (if ``epoch``) the LeNet epoch at each count
    in ``threads``; returns ``{"reference": str, "by_threads": {T: {...}}}``."""
    from derivgrad.kernels import linear, set_threads

    from ..training.bench_epoch import run_side

    out = {}
    ref = None
    for T in threads:
        set_threads(T)
        torch = _torch(T)
        ref = f"PyTorch {torch.__version__}" if torch is not None else None
        log(f"threads {T}: kernels")
        res = dict(
            rows=kernel_rows(torch, repeats),
            ceiling=gemm_ceiling(torch, repeats),
            linear_strategy=linear.strategy(T),
        )
        if epoch:
            log(f"threads {T}: LeNet epoch, one process per side")
            ep = dict(ours=run_side("ours", T, data, limit=limit))
            ep["former"] = run_side("ours", T, data, limit=limit, linear="rows")
            if torch is not None:
                ep["torch"] = run_side("torch", T, data, limit=limit)
            res["epoch"] = ep
        out[T] = res
    return dict(
        reference=ref or "NumPy (PyTorch not installed)",
        by_threads=out,
        blas=K.blas_info(),
        openblas_coretype=os.environ.get("OPENBLAS_CORETYPE"),
    )


def _fmt(v, f):
    return "-" if v is None else format(v, f)


def print_table(m: Mapping[str, Any], repeats: int, out: Callable[..., None] = print) -> None:
    by = m["by_threads"]
    Ts = list(by)
    torch = not m["reference"].startswith("NumPy")
    out(
        f"reference: {m['reference']}"
        + ("" if torch else " -- install torch to compare with PyTorch")
        + f"; float32; median of {repeats} alternating warm repeats"
        + f"; threads {','.join(map(str, Ts))}"
    )
    out("ratio = derivgrad time / reference time at the same thread count (below 1: faster)")
    out(
        "GF/s counts a direct sum's multiply-adds (a convolution: 2*N*C_out*H_out*W_out*"
        "C_in*KH*KW); 3x3 stride-1 convolutions on the Winograd path do 2.25-4x fewer, so "
        "their GF/s can pass the GEMM ceiling"
    )
    blas = m.get("blas", [])
    out(
        "BLAS kernels: "
        + ", ".join(
            f"{lib['version']} {lib['architecture']}"
            + (" (inside prange)" if lib["inside_prange"] else " (NumPy)")
            for lib in blas
        )
        + (
            f"; OPENBLAS_CORETYPE={m['openblas_coretype']} is set: OpenBLAS runs that core's "
            "kernels, not the ones it would pick for this CPU"
            if m.get("openblas_coretype")
            else ""
        )
    )
    for T in Ts:
        c = by[T]["ceiling"]
        out(
            f"GEMM ceiling at {T} thread(s), one sgemm {LINEAR_CASE[0]}x{LINEAR_CASE[1]} @ "
            f"{LINEAR_CASE[1]}x{LINEAR_CASE[2]}: NumPy BLAS {c['numpy']:.0f} GFLOP/s"
            + (f", PyTorch {c['torch']:.0f} GFLOP/s" if "torch" in c else "")
            + f"; linear strategy: {by[T]['linear_strategy']}"
        )
    head = f"{'case':52s}" + "".join(
        f" | T={T:<2d}{'ms':>7s} {'ref':>7s} {'ratio':>5s} {'GF/s':>5s} {'%ceil':>5s}" for T in Ts
    )
    out(head)
    out("-" * len(head))
    for i, r0 in enumerate(by[Ts[0]]["rows"]):
        for d in ("fwd", "bwd"):
            line = f"{r0['case'] + ' ' + d:52s}"
            for T in Ts:
                r = by[T]["rows"][i]
                gf = r.get(f"gflops_{d}")
                ceil = by[T]["ceiling"]["numpy"]
                line += (
                    f" | {r[d + '_ms']:11.2f} {_fmt(r['ref_' + d + '_ms'], '7.2f'):>7s} "
                    f"{_fmt(r['ratio_' + d], '5.2f'):>5s} {_fmt(gf, '5.0f'):>5s} "
                    f"{_fmt(None if gf is None else 100 * gf / ceil, '5.0f'):>5s}"
                )
            out(line)
    if "epoch" not in by[Ts[0]]:
        return
    for label, key in (("epoch loop s", "epoch_s"), ("whole process s", "process_s")):
        for side, name in (("ours", "derivgrad"), ("former", "former linear split")):
            line = f"{'LeNet epoch ' + label + ': ' + name:52s}"
            for T in Ts:
                ep = by[T]["epoch"]
                t = ep.get("torch", {}).get(key)
                line += (
                    f" | {ep[side][key]:11.2f} {_fmt(t, '7.2f'):>7s} "
                    f"{_fmt(None if t is None else ep[side][key] / t, '5.2f'):>5s} "
                    f"{'':5s} {'':5s}"
                )
            out(line)


def run(
    repeats: int = 20,
    threads: Sequence[int] | None = None,
    as_json: bool = False,
    out: Callable[..., None] = print,
    epoch: bool = False,
    data: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Measure at each count in ``threads`` (a list; default: the current count) and print
    the side-by-side table (or one JSON object); returns the measurements."""
    from derivgrad.kernels import get_threads

    threads = list(threads or [get_threads()])
    log = (lambda s: None) if as_json else (lambda s: print(s, file=sys.stderr))
    m = measure(threads, repeats, epoch, data, limit, log)
    if as_json:
        out(json.dumps(m))
    else:
        print_table(m, repeats, out)
    return m
