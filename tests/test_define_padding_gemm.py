"""Padded contractions (``(x[...] ?? 0) * w[...]``) run as pack + GEMM: the pack tests the
guarded subscripts and writes 0 outside, the adjoint's scatter drops the entries outside.
Each definition below takes a different way of splitting the work (see
``derivgrad/notation/contract.py``); on hypothesis-drawn sizes, float32 and float64, the
kernels agree with NumPy formulas of the zero-padded input written here (``np.pad`` +
``einsum``) and, in float64, with the same definition's plain loop nests (the generator's
``gemm`` off)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close

from derivgrad.notation import codegen
from derivgrad.notation.op import DefinedOp


def same2d(x, w, dy=None):
    """A "same" 3x3 convolution: one zero on each side of both image axes."""
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = sum(
        np.einsum("ncij,oc->noij", xp[:, :, u : u + H, v : v + W], w[:, :, u, v])
        for u in range(3)
        for v in range(3)
    )
    if dy is None:
        return y
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for u in range(3):
        for v in range(3):
            dxp[:, :, u : u + H, v : v + W] += np.einsum("noij,oc->ncij", dy, w[:, :, u, v])
            dw[:, :, u, v] = np.einsum("noij,ncij->oc", dy, xp[:, :, u : u + H, v : v + W])
    return {"x": dxp[:, :, 1:-1, 1:-1], "w": dw}


def strided1d(x, w, dy=None):
    """Stride 2, one zero on the left: ceil(L / 2) outputs, the last windows past the end."""
    L, U = x.shape[2], w.shape[2]
    Iy = math.ceil(L / 2)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2 * Iy + U)))
    y = sum(np.einsum("nci,oc->noi", xp[:, :, u : u + 2 * Iy : 2], w[:, :, u]) for u in range(U))
    if dy is None:
        return y
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for u in range(U):
        dxp[:, :, u : u + 2 * Iy : 2] += np.einsum("noi,oc->nci", dy, w[:, :, u])
        dw[:, :, u] = np.einsum("noi,nci->oc", dy, xp[:, :, u : u + 2 * Iy : 2])
    return {"x": dxp[:, :, 1 : 1 + L], "w": dw}


def shifted(x, w, dy=None):
    """Row i reads row i - 1 (a zero row first); the last row of x is never read."""
    R = x.shape[0]
    C, U = w.shape[1:]
    xs = np.pad(x, ((1, 0), (0, 0)))[:R]
    y = sum(np.einsum("ic,oc->oi", xs[:, u : u + C], w[:, :, u]) for u in range(U))
    if dy is None:
        return y
    dxs, dw = np.zeros_like(xs), np.zeros_like(w)
    for u in range(U):
        dxs[:, u : u + C] += np.einsum("oi,oc->ic", dy, w[:, :, u])
        dw[:, :, u] = np.einsum("oi,ic->oc", dy, xs[:, u : u + C])
    dx = np.zeros_like(x)
    dx[: R - 1] = dxs[1:]
    return {"x": dx, "w": dw}


# definition, example shapes, drawn shapes, reference; the comment says how the work is split
CASES = {
    # forward: chunks of n; dx: n a batch index (alone on an unguarded axis), guarded scatter
    "same2d": (
        "y[n, o, i, j] += (x[n, c, i + u - 1, j + v - 1] ?? 0) * w[o, c, u, v]",
        dict(x=(1, 2, 4, 4), w=(2, 2, 3, 3)),
        lambda d: dict(x=(d(1, 3), d(1, 4), d(1, 7), d(1, 7)), w=(d(1, 4), None, 3, 3)),
        same2d,
    ),
    # a strided padded read whose last windows fall past the end of x
    "strided1d": (
        "y[n, o, i] += (x[n, c, 2*i + u - 1] ?? 0) * w[o, c, u]",
        dict(x=(2, 2, 7), w=(3, 2, 3)),
        lambda d: dict(x=(d(1, 3), d(1, 4), d(1, 12)), w=(d(1, 4), None, d(1, 4))),
        strided1d,
    ),
    # dx[i - 1, c + u]: the only index alone on an axis of dx is on the guarded one, which
    # owns no chunk: o is split, partial sums, then one guarded scatter
    "shifted": (
        "y[o, i] += (x[i - 1, c + u] ?? 0) * w[o, c, u]",
        dict(x=(5, 4), w=(3, 3, 2)),
        lambda d: dict(x=(d(1, 8), None), w=(d(1, 5), d(1, 4), d(1, 3))),
        shifted,
    ),
}


class LoopNestOp(DefinedOp):
    """The same definition with the GEMM lowering off: its plain loop nests (a module of its
    own, under its own cache key)."""

    def __init__(self, spec, shapes):
        super().__init__(spec, shapes)
        self.key = hashlib.sha256(f"loop nests {self.key}".encode()).hexdigest()[:16]

    def source(self) -> str:
        codegen.NumbaEmitter.gemm = False
        try:
            return super().source()
        finally:
            codegen.NumbaEmitter.gemm = True


OPS = {k: DefinedOp(spec, ex) for k, (spec, ex, _, _) in CASES.items()}
LOOPS = {k: LoopNestOp(spec, ex) for k, (spec, ex, _, _) in CASES.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_padded_contractions_are_lowered_to_gemm(case):
    src = OPS[case].source()
    cut = src.index("def _backward")
    assert src[:cut].count("# contraction, pack + GEMM") == 1
    assert src[cut:].count("# contraction, pack + GEMM") == 2  # dx and dw
    assert "# contraction" not in LOOPS[case].source()


def _shapes(case: str, draw) -> dict[str, tuple[int, ...]]:
    shapes = CASES[case][2](lambda a, b: draw(st.integers(a, b)))
    if case == "same2d" or case == "strided1d":
        shapes["w"] = (shapes["w"][0], shapes["x"][1], *shapes["w"][2:])
    else:  # x wide enough for c + u, maybe wider (its last columns then get zero)
        C, U = shapes["w"][1:]
        shapes["x"] = (shapes["x"][0], C + U - 1 + draw(st.integers(0, 2)))
    return shapes


def _check(case: str, shapes: dict, seed: int, dtype: str) -> None:
    ref = CASES[case][3]
    rng = np.random.default_rng(seed)
    low = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    wide = {k: v.astype(np.float64) for k, v in low.items()}
    want = ref(**wide)
    y = OPS[case].forward(**low)
    assert y.dtype == np.dtype(dtype) and y.shape == want.shape
    assert_close(y, want, np.dtype(dtype), f"{case} forward")
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = OPS[case].backward(dy, **low)
    wgrads = ref(**wide, dy=dy.astype(np.float64))
    for k in low:
        assert grads[k].dtype == np.dtype(dtype)
        assert_close(grads[k], wgrads[k], np.dtype(dtype), f"{case} d{k}")
    if dtype != "f8":  # the loop nests in float64 only: each dtype is a compile of its own
        return
    # the loop nests: another summation order, the same numbers to rounding
    assert_close(y, LOOPS[case].forward(**low), np.dtype(dtype), f"{case} forward, loops")
    lgrads = LOOPS[case].backward(dy, **low)
    for k in low:
        assert_close(grads[k], lgrads[k], np.dtype(dtype), f"{case} d{k}, loops")


@pytest.mark.parametrize("case", list(CASES))
def test_padded_gemm_on_drawn_sizes(case):
    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data(), seed=st.integers(0, 2**31), dtype=st.sampled_from(["f4", "f8"]))
    def run(data, seed, dtype):
        _check(case, _shapes(case, data.draw), seed, dtype)

    run()


def test_padded_gemm_on_sizes_that_need_several_blocks():
    # 1 << 17 elements a packed block: several blocks and both threads' chunks
    _check("same2d", dict(x=(5, 6, 23, 21), w=(7, 6, 3, 3)), 3, "f8")
    _check("shifted", dict(x=(400, 60), w=(50, 40, 21)), 4, "f8")
