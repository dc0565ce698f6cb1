"""Contractions whose arrays already are the GEMM's matrices run as BLAS on the arrays
themselves (``contract.direct``: no packing, transposes as flags, ``beta = 0`` where a chunk
owns its block).  Each layout the direct form takes — either factor stored transposed, a
batch, a loop over a leading or a summed index, groups of several indices, a scale, row or
column chunks, an adjoint that other terms also write — on drawn sizes, at 1-3 threads,
float32 and float64, against ``einsum`` written here and the chain rule worked by hand; and
the Python form of ``gemm_scaled`` (what a generated module runs with Numba's JIT off)
against NumPy."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import assert_close

from derivgrad.kernels._gemm import gemm_scaled
from derivgrad.notation.op import DefinedOp

# definition, example shapes, forward by einsum, its gradients by einsum (upstream g)
CASES = {
    "x w^T (B stored transposed)": (
        "y[n, o] += x[n, i] * w[o, i]",
        dict(x=(3, 4), w=(5, 4)),
        lambda x, w: x @ w.T,
        lambda g, x, w: dict(x=g @ w, w=g.T @ x),
    ),
    "x^T w (A stored transposed)": (
        "y[n, o] += x[i, n] * w[i, o]",
        dict(x=(4, 3), w=(4, 5)),
        lambda x, w: x.T @ w,
        lambda g, x, w: dict(x=w @ g.T, w=x @ g),
    ),
    "batched product": (
        "y[b, i, j] += a[b, i, k] * c[b, k, j]",
        dict(a=(2, 3, 4), c=(2, 4, 5)),
        lambda a, c: np.einsum("bik,bkj->bij", a, c),
        lambda g, a, c: dict(a=np.einsum("bij,bkj->bik", g, c), c=np.einsum("bik,bij->bkj", a, g)),
    ),
    "scaled attention scores": (
        "s[b, i, j] += q[b, i, d] * k[b, j, d] / sqrt(len(d))",
        dict(q=(2, 3, 4), k=(2, 5, 4)),
        lambda q, k: np.einsum("bid,bjd->bij", q, k) / np.sqrt(q.shape[2]),
        lambda g, q, k: dict(
            q=np.einsum("bij,bjd->bid", g, k) / np.sqrt(q.shape[2]),
            k=np.einsum("bij,bid->bjd", g, q) / np.sqrt(q.shape[2]),
        ),
    ),
    # n leads y and x only: one GEMM per n; the weight gradient sums over n as a loop of
    # GEMMs, the first writing and the rest adding
    "1x1 convolution (a loop over n)": (
        "y[n, o, i, j] += x[n, c, i, j] * w[o, c]",
        dict(x=(2, 3, 4, 5), w=(4, 3)),
        lambda x, w: np.einsum("ncij,oc->noij", x, w),
        lambda g, x, w: dict(
            x=np.einsum("noij,oc->ncij", g, w), w=np.einsum("noij,ncij->oc", g, x)
        ),
    ),
    "a summed loop index": (
        "y[o, c] += a[n, o, k] * b[n, c, k]",
        dict(a=(2, 3, 4), b=(2, 5, 4)),
        lambda a, b: np.einsum("nok,nck->oc", a, b),
        lambda g, a, b: dict(a=np.einsum("oc,nck->nok", g, b), b=np.einsum("oc,nok->nck", g, a)),
    ),
    "linear on a sequence (rows of two indices)": (
        "y[b, t, o] += x[b, t, i] * w[o, i]",
        dict(x=(2, 3, 4), w=(5, 4)),
        lambda x, w: x @ w.T,
        lambda g, x, w: dict(x=g @ w, w=np.einsum("bto,bti->oi", g, x)),
    ),
    "two summed indices": (
        "y[n, o] += x[n, c, k] * w[o, c, k]",
        dict(x=(3, 2, 4), w=(5, 2, 4)),
        lambda x, w: np.einsum("nck,ock->no", x, w),
        lambda g, x, w: dict(x=np.einsum("no,ock->nck", g, w), w=np.einsum("no,nck->ock", g, x)),
    ),
    # x is read by the product and by the skip: its adjoint's GEMM adds (beta = 1) to the
    # skip's term, written first
    "product plus skip": (
        """h[n, o] += x[n, i] * w[o, i]
           y[n, o] = h[n, o] + x[n, o]""",
        dict(x=(3, 4), w=(4, 4)),
        lambda x, w: x @ w.T + x,
        lambda g, x, w: dict(x=g @ w + g, w=g.T @ x),
    ),
}

_OPS: dict[str, DefinedOp] = {}


def _op(case: str) -> DefinedOp:
    if case not in _OPS:
        spec, example, _, _ = CASES[case]
        _OPS[case] = DefinedOp(spec, example)
    return _OPS[case]


@pytest.mark.parametrize("case", list(CASES))
def test_the_case_takes_the_direct_form(case):
    """Forward and every adjoint of these layouts call BLAS on the arrays (so the tests below
    exercise the direct form, not the packed one)."""
    src = _op(case).source()
    calls = src.count("gemm_scaled(")
    assert calls == 3, f"{case}: {calls} direct GEMMs in\n{src}"
    assert "np.dot(" not in src


def _scaled(shapes: dict, k: int) -> dict:
    """Every size of the example times ``k`` (sizes that agree keep agreeing)."""
    return {n: tuple(d * k for d in s) for n, s in shapes.items()}


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=4, deadline=None)
@given(k=st.integers(1, 4), threads=st.integers(1, 3), f32=st.booleans(), seed=st.integers(0, 99))
def test_direct_gemm_agrees_with_einsum(case, k, threads, f32, seed):
    spec, example, fwd, grads = CASES[case]
    op = _op(case)
    rng = np.random.default_rng(seed)
    dt = np.float32 if f32 else np.float64
    x = {n: rng.standard_normal(s).astype(dt) for n, s in _scaled(example, k).items()}
    x64 = {n: v.astype(np.float64) for n, v in x.items()}
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        y, pullback = op.vjp(**x)
        g = rng.standard_normal(y.shape).astype(dt)
        got = pullback(g)
    finally:
        numba.set_num_threads(before)
    assert_close(y, fwd(*x64.values()), dt, f"{case}: y")
    want = grads(g.astype(np.float64), *x64.values())
    for n in x:
        assert_close(got[n], want[n], dt, f"{case}: d{n}")


def _blocks(draw_ints, ta, tb, m, n, k):
    """Flat arrays holding op(A)[m, k], op(B)[k, n] and C[m, n] as row-major blocks with room
    around them (an offset and a leading dimension longer than a row)."""
    ar, ac = (k, m) if ta else (m, k)
    br, bc = (n, k) if tb else (k, n)
    ia, ib, ic, pa, pb, pc = draw_ints
    lda, ldb, ldc = ac + pa, bc + pb, n + pc
    return (ia, lda, ar, ac), (ib, ldb, br, bc), (ic, ldc)


@settings(max_examples=40, deadline=None)
@given(
    ta=st.booleans(),
    tb=st.booleans(),
    m=st.integers(1, 5),
    n=st.integers(1, 5),
    k=st.integers(0, 5),
    pads=st.tuples(*[st.integers(0, 3)] * 6),
    alpha=st.sampled_from([1.0, -0.5, 2.0]),
    beta=st.sampled_from([0.0, 1.0]),
    seed=st.integers(0, 99),
)
def test_gemm_scaled_in_python_is_the_blas_call(ta, tb, m, n, k, pads, alpha, beta, seed):
    """The plain-Python ``gemm_scaled`` (a generated module with the JIT off) against NumPy,
    and the compiled one against it: same blocks, same result; ``beta = 0`` ignores NaN in C."""
    rng = np.random.default_rng(seed)
    (ia, lda, ar, ac), (ib, ldb, br, bc), (ic, ldc) = _blocks(pads, ta, tb, m, n, k)
    a = rng.standard_normal(ia + max(ar, 1) * lda)
    b = rng.standard_normal(ib + max(br, 1) * ldb)
    c = rng.standard_normal(ic + m * ldc)
    if beta == 0:
        c[ic : ic + ldc] = np.nan
    A = np.zeros((ar, ac))
    B = np.zeros((br, bc))
    for r, q in np.ndindex(ar, ac):
        A[r, q] = a[ia + r * lda + q]
    for r, q in np.ndindex(br, bc):
        B[r, q] = b[ib + r * ldb + q]
    C = np.array([[c[ic + r * ldc + q] for q in range(n)] for r in range(m)])
    want = alpha * ((A.T if ta else A) @ (B.T if tb else B)) + (beta * C if beta else 0)
    py = c.copy()
    gemm_scaled(ta, tb, m, n, k, alpha, a, ia, lda, b, ib, ldb, beta, py, ic, ldc)
    compiled = c.copy()
    _compiled(ta, tb, m, n, k, alpha, a, ia, lda, b, ib, ldb, beta, compiled, ic, ldc)
    for out in (py, compiled):
        got = np.array([[out[ic + r * ldc + q] for q in range(n)] for r in range(m)])
        assert_close(got, want, np.float64, "gemm_scaled", scale=1.0)
        outside = np.ones(c.size, bool)
        for r in range(m):
            outside[ic + r * ldc : ic + r * ldc + n] = False
        assert np.array_equal(out[outside], c[outside], equal_nan=True)  # nothing else written


@numba.njit(cache=False)
def _compiled(ta, tb, m, n, k, alpha, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    gemm_scaled(ta, tb, m, n, k, alpha, a, ia, lda, b, ib, ldb, beta, c, ic, ldc)


def test_gemm_scaled_refuses_a_block_outside_its_array():
    a = np.zeros(6)
    with pytest.raises(ValueError, match="outside its array"):
        gemm_scaled(False, False, 2, 2, 3, 1.0, a, 1, 3, a, 0, 2, 0.0, np.zeros(4), 0, 2)
    with pytest.raises(ValueError, match="outside its array"):
        _compiled(False, False, 2, 2, 3, 1.0, a, 1, 3, a, 0, 2, 0.0, np.zeros(4), 0, 2)


def test_a_padded_factor_keeps_the_packed_path():
    """``(x[n, i - 1] ?? 0)`` has bare-looking subscripts, but its zeros outside ``x`` are the
    packed path's bounds test: it must not be read as the matrix ``x`` itself."""
    op = DefinedOp("y[n, o] += (x[n, i - 1] ?? 0) * w[o, i]", dict(x=(3, 4), w=(5, 4)))
    assert "gemm_scaled(" not in op.source()
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((6, 8)), rng.standard_normal((5, 8))
    shifted = np.pad(x, ((0, 0), (1, 0)))[:, :8]  # x[n, i - 1], 0 at i = 0
    y, pullback = op.vjp(x=x, w=w)
    assert_close(y, shifted @ w.T, np.float64, "y")
    g = rng.standard_normal(y.shape)
    got = pullback(g)
    assert_close(got["w"], g.T @ shifted, np.float64, "dw")
    assert_close(got["x"], np.pad(g @ w, ((0, 0), (0, 1)))[:, 1:], np.float64, "dx")
