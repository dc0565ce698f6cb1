"""The data-partitioned GEMMs: the strided BLAS call, every tile grid, every linear-layer
strategy at 1 and at all threads, and the one thread-count setter (``set_threads``)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from strategies_kernels import DTYPES
from threadpoolctl import threadpool_info
from tolerances import assert_close

from derivgrad import kernels as K
from derivgrad.kernels import _blas, _threads, linear
from derivgrad.kernels._gemm import gemm
from derivgrad.kernels._gemm_kernels import tiled_gemm


@njit(cache=False)
def _call_gemm(ta, tb, m, n, k, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    gemm(ta, tb, m, n, k, a, ia, lda, b, ib, ldb, beta, c, ic, ldc)


def _block(flat, start, ld, rows, cols):
    return np.stack([flat[start + r * ld : start + r * ld + cols] for r in range(rows)])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=3, max_size=3),
    st.booleans(),
    st.booleans(),
    st.sampled_from([0.0, 1.0, -0.5]),
    DTYPES,
    st.integers(0, 2**31 - 1),
)
def test_gemm_on_strided_blocks(mnk, ta, tb, beta, dtype, seed):
    m, n, k = mnk
    rng = np.random.default_rng(seed)
    ar, ac = (k, m) if ta else (m, k)
    br, bc = (n, k) if tb else (k, n)
    lda, ldb, ldc = ac + 2, bc + 1, n + 3
    a = rng.standard_normal(3 + ar * lda).astype(dtype)
    b = rng.standard_normal(1 + br * ldb).astype(dtype)
    c = rng.standard_normal(2 + m * ldc).astype(dtype)
    A = _block(a.astype(np.float64), 3, lda, ar, ac)
    B = _block(b.astype(np.float64), 1, ldb, br, bc)
    C0 = _block(c.astype(np.float64), 2, ldc, m, n)
    ref = (A.T if ta else A) @ (B.T if tb else B) + beta * C0
    before = c.copy()
    _call_gemm(ta, tb, m, n, k, a, 3, lda, b, 1, ldb, beta, c, 2, ldc)
    assert_close(_block(c, 2, ldc, m, n), ref, dtype, "C", scale=np.abs(C0).max())
    # nothing outside the block was written (the gaps between rows included)
    mask = np.ones(c.size, bool)
    for r in range(m):
        mask[2 + r * ldc : 2 + r * ldc + n] = False
    assert np.array_equal(c[mask], before[mask])


def test_gemm_refuses_blocks_outside_their_arrays():
    a = np.ones(12, np.float32)
    c = np.zeros(12, np.float32)
    with pytest.raises(ValueError, match="outside"):
        _call_gemm(False, False, 3, 4, 4, a, 1, 4, a, 0, 4, 0.0, c, 0, 4)  # a ends at 13
    with pytest.raises(ValueError, match="outside"):
        _call_gemm(False, False, 3, 4, 3, a, 0, 4, a, 0, 4, 0.0, c, 1, 4)  # c ends at 13


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_every_tile_grid_matches_the_product(dtype, ta, tb):
    rng = np.random.default_rng(7)
    M, N, Kd = 5, 7, 9  # tiles larger than a dimension (tm > M ...) leave blocks empty
    A = rng.standard_normal((Kd, M) if ta else (M, Kd)).astype(dtype)
    B = rng.standard_normal((N, Kd) if tb else (Kd, N)).astype(dtype)
    ref = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
    for tm in (1, 2, 3, 6):
        for tn in (1, 2, 8):
            for tk in (1, 2, 4, 10):
                part = np.full(tk * M * N, np.nan, dtype)  # stale workspace must not leak
                c = np.full((M, N), np.nan, dtype)
                lda, ldb = A.shape[1], B.shape[1]
                tiled_gemm(ta, tb, M, N, Kd, A.ravel(), lda, B.ravel(), ldb, c.ravel(), N,
                           tm, tn, tk, part)  # fmt: skip
                assert_close(c, ref, dtype, f"C grid {(tm, tn, tk)}")


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 6, 16])
def test_grid_uses_every_thread_once(threads):
    for M, N, Kd in [(64, 500, 2880), (64, 2880, 500), (500, 2880, 64), (1, 1, 1), (3, 2, 40)]:
        tm, tn, tk = linear.grid(M, N, Kd, threads)
        assert tm <= max(M, 1) and tn <= max(N, 1) and tk <= max(Kd, 1)
        assert tm * tn * tk == threads or (tm, tn, tk) == (1, 1, 1)


def _thread_counts():
    return sorted({1, _threads.max_threads()})


@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("how", linear.STRATEGIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_linear_strategy_matches_the_reference(how, dtype, transposed):
    rng = np.random.default_rng(3)
    before = K.get_threads()
    orientation = linear.TRANSPOSED_FORWARD["on"]
    linear.TRANSPOSED_FORWARD["on"] = transposed
    try:
        for threads in _thread_counts():
            K.set_threads(threads)
            linear.force_strategy(how)
            for N, IN, OUT in [(5, 7, 3), (1, 9, 4), (6, 1, 2), (3, 40, 11)]:
                x = rng.standard_normal((N, IN)).astype(dtype)
                w = rng.standard_normal((OUT, IN)).astype(dtype)
                b = rng.standard_normal(OUT).astype(dtype)
                dy = rng.standard_normal((N, OUT)).astype(dtype)
                x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
                assert_close(K.linear_forward(x, w, b), x64 @ w64.T + b, dtype, f"y {how}")
                assert_close(K.linear_forward(x, w), x64 @ w64.T, dtype, f"y {how}")
                dx, dw, db = K.linear_backward(dy, x, w)
                assert_close(dx, dy64 @ w64, dtype, f"dx {how}")
                assert_close(dw, dy64.T @ x64, dtype, f"dw {how}")
                assert_close(db, dy64.sum(0), dtype, f"db {how}")
                dx, dw2, db = K.linear_backward(dy, x, w, bias=False, need_dx=False)
                assert dx is None and db is None and np.array_equal(dw, dw2)
    finally:
        linear.TRANSPOSED_FORWARD["on"] = orientation
        linear.force_strategy(None)
        K.set_threads(before)


def test_force_strategy_names_the_choices():
    with pytest.raises(ValueError, match="strategy must be one of"):
        linear.force_strategy("columns")


def _blas_threads():
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_set_threads_sets_numba_and_every_outer_blas_and_keeps_the_inner_one_at_1():
    before = K.get_threads()
    try:
        for n in _thread_counts():
            assert K.set_threads(n) == n
            assert K.get_threads() == n
            for path, count in _blas_threads().items():
                assert count == (1 if path in _blas.PINNED else n), path
    finally:
        K.set_threads(before)


@pytest.mark.parametrize("bad", [0, -1, "two", "1.5", True, 10**6])
def test_set_threads_rejects_bad_counts_in_one_line(bad):
    with pytest.raises(ValueError, match="threads") as e:
        K.set_threads(bad)
    assert "\n" not in str(e.value)


def test_set_threads_reads_the_environment(monkeypatch):
    before = K.get_threads()
    try:
        monkeypatch.setenv(_threads.ENV, "1")
        assert K.set_threads() == 1 and K.get_threads() == 1
        monkeypatch.setenv(_threads.ENV, "zero")
        with pytest.raises(ValueError, match=_threads.ENV):
            K.set_threads()
    finally:
        K.set_threads(before)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["--threads", "0"], "--threads must be an integer >= 1"),
        (["--threads", "1,,2"], "comma-separated"),
        (["--threads", "1,1"], "twice"),
        (["--threads", "100000"], "exceeds"),
        (["--limit", "3"], "--limit must be >= 64"),
    ],
)
def test_bench_command_rejects_bad_options_in_one_line(args, message, capsys, monkeypatch):
    from derivgrad.cli import main

    monkeypatch.setenv(_threads.ENV, "")
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_bench_command_rejects_bad_data_before_timing_anything(tmp_path, capsys, monkeypatch):
    # the epoch runs last, after minutes of kernel timings: its data is checked first
    from derivgrad.cli import main

    monkeypatch.setenv(_threads.ENV, "")
    corrupt = tmp_path / "mnist"
    corrupt.mkdir()
    (corrupt / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x07" + b"\x01" * 40)
    for data, message in ((tmp_path / "missing", "no such file"), (corrupt, "train-images")):
        assert main(["bench", "--threads", "1", "--data", str(data)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and message in err and len(err.strip().splitlines()) == 1, err
