"""The thread pool that runs a defined layer's parallel phases
(:func:`derivgrad.notation.runtime.run_parallel`): every chunk runs once whichever thread
claims it, a worker that never comes leaves its chunk to the caller, an error in a worker
reaches the caller; and the kernels give the same bits at 1 and 2 threads and from one run
to the next (training's exact resume depends on it), against an independent NumPy
reference."""

from __future__ import annotations

import threading
import time
from queue import SimpleQueue

import numba
import numpy as np
import pytest
from tolerances import assert_close

import derivgrad
from derivgrad.kernels import get_threads, set_threads
from derivgrad.notation import runtime

needs_two = pytest.mark.skipif(
    int(numba.config.NUMBA_NUM_THREADS) < 2,  # type: ignore[attr-defined]
    reason="Numba's pool has one thread",
)


@pytest.fixture
def two_threads():
    before = get_threads()
    set_threads(2)
    yield
    set_threads(before)


def _recorder(delay_on_caller: float = 0.0):
    ran: list[tuple[int, int, str]] = []
    lock = threading.Lock()
    caller = threading.current_thread()

    def fn(c, nt, tag):
        if threading.current_thread() is caller and delay_on_caller:
            time.sleep(delay_on_caller)  # releases the GIL: a woken worker claims the rest
        with lock:
            ran.append((c, nt, threading.current_thread().name))

    return ran, fn


@needs_two
def test_every_chunk_runs_once_and_a_worker_takes_one(two_threads):
    ran, fn = _recorder(delay_on_caller=0.3)
    runtime.run_parallel(fn, "tag")
    assert sorted(c for c, _, _ in ran) == [0, 1]
    assert {nt for _, nt, _ in ran} == {2}
    assert any(name.startswith("derivgrad-define") for _, _, name in ran), ran


@needs_two
def test_a_worker_that_never_comes_leaves_its_chunk_to_the_caller(two_threads, monkeypatch):
    # a queue no worker reads: the worker is as late as a thread can be
    monkeypatch.setattr(runtime, "_queue", SimpleQueue())
    ran, fn = _recorder()
    runtime.run_parallel(fn, "tag")
    assert sorted(c for c, _, _ in ran) == [0, 1]
    assert {name for _, _, name in ran} == {threading.current_thread().name}


@needs_two
def test_an_error_in_a_chunk_reaches_the_caller_after_every_chunk_has_run(two_threads):
    ran: list[int] = []

    def fn(c, nt):
        ran.append(c)
        if c == 1:
            raise ValueError("chunk 1 failed")
        time.sleep(0.05)

    with pytest.raises(ValueError, match="chunk 1 failed"):
        runtime.run_parallel(fn)
    assert sorted(ran) == [0, 1]
    # the pool still works after it
    again, fn2 = _recorder()
    runtime.run_parallel(fn2, "tag")
    assert sorted(c for c, _, _ in again) == [0, 1]


@needs_two
def test_work_too_small_to_share_runs_every_chunk_on_the_caller(two_threads, monkeypatch):
    from derivgrad.kernels import _threads

    monkeypatch.setitem(_threads.serial_below, "bytes", _threads.SMALL_BYTES)
    ran, fn = _recorder()
    runtime.run_parallel(fn, np.zeros(1000))  # 8 kB: below the bound
    assert [(c, nt) for c, nt, _ in ran] == [(0, 2), (1, 2)]  # the chunks of 2 threads
    assert {name for _, _, name in ran} == {threading.current_thread().name}
    big, fn = _recorder(delay_on_caller=0.3)
    runtime.run_parallel(fn, np.zeros(_threads.SMALL_BYTES // 8))  # at the bound: shared
    assert sorted(c for c, _, _ in big) == [0, 1]
    assert any(name.startswith("derivgrad-define") for _, _, name in big), big


def test_the_profile_hook_records_each_phase_when_on_and_nothing_when_off():
    calls: list[int] = []

    def phase(c, nt):
        calls.append(c)

    runtime.run_parallel(phase)
    runtime.profile = {}
    try:
        runtime.run_parallel(phase)
        runtime.run_parallel(phase)
        times = runtime.profile
    finally:
        runtime.profile = None
    assert list(times) == ["phase"] and len(times["phase"]) == 2
    assert all(t >= 0 for t in times["phase"])


# -- the kernels: 1 and 2 threads, run after run, against NumPy ------------------------------
DEPTHWISE = "y[n, c, i, j] += x[n, c, i + u, j + v] * w[c, u, v]"
LAYERNORM = """
    mu[n]   += x[n, d] / len(d)
    var[n]  += (x[n, d] - mu[n])**2 / len(d)
    y[n, d]  = g[d] * (x[n, d] - mu[n]) / sqrt(var[n] + 1e-5) + b[d]
"""


def ref_depthwise(x, w, dy):
    """Forward and both gradients by sliding windows and einsum (written apart from the
    kernels): ``dx`` scattered window by window, ``dw`` contracted over n, i, j."""
    K = w.shape[1]
    win = np.lib.stride_tricks.sliding_window_view(x, (K, K), axis=(2, 3))
    y = np.einsum("ncijuv,cuv->ncij", win, w)
    dw = np.einsum("ncij,ncijuv->cuv", dy, win)
    dx = np.zeros_like(x)
    Ho, Wo = y.shape[2:]
    for u in range(K):
        for v in range(K):
            dx[:, :, u : u + Ho, v : v + Wo] += dy * w[None, :, u, v, None, None]
    return y, {"x": dx, "w": dw}


def ref_layernorm(x, g, b, dy):
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    s = 1 / np.sqrt(var + 1e-5)
    xh = (x - mu) * s
    y = g * xh + b
    dxh = dy * g
    dx = s * (dxh - dxh.mean(axis=1, keepdims=True) - xh * (dxh * xh).mean(axis=1, keepdims=True))
    return y, {"x": dx, "g": (dy * xh).sum(axis=0), "b": dy.sum(axis=0)}


CASES = {
    # channels and rows of several sizes, odd ones among them: chunks of unequal length
    "depthwise": (DEPTHWISE, dict(x=(5, 7, 9, 8), w=(7, 3, 3)), ref_depthwise),
    "layernorm": (LAYERNORM, dict(x=(13, 11), g=(11,), b=(11,)), ref_layernorm),
}


def _run(op, arrays, dy, threads):
    set_threads(threads)
    y, pullback = op.vjp(**arrays)
    return np.array(y), pullback(dy)


@needs_two
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_threads_give_the_bits_of_one_run_after_run_and_match_numpy(case, dtype):
    spec, shapes, ref = CASES[case]
    op = derivgrad.define(spec, **shapes)
    rng = np.random.default_rng(7)
    arrays = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    before = get_threads()
    try:
        set_threads(1)
        dy = rng.standard_normal(np.shape(op.forward(**arrays))).astype(dtype)
        one = _run(op, arrays, dy, 1)
        runs = [_run(op, arrays, dy, 2) for _ in range(4)]
    finally:
        set_threads(before)
    y_ref, g_ref = ref(*(arrays[k].astype(np.float64) for k in shapes), dy.astype(np.float64))
    assert_close(one[0], y_ref, dtype)
    for k in shapes:
        assert_close(one[1][k], g_ref[k], dtype)
    # no contraction is split by the thread count here: every entry has one writer and one
    # order of summation, so the thread that ran its chunk changes no bit
    for y2, g2 in runs:
        assert np.array_equal(y2, one[0])
        for k in shapes:
            assert np.array_equal(g2[k], one[1][k]), k
