"""Two-factor contractions of ``derivgrad.define`` run as pack + GEMM (see
``derivgrad/notation/contract.py``): one definition for each way the lowering splits the work
across threads, on hypothesis-drawn sizes, float32 and float64, against an independent NumPy
forward (loops and ``einsum`` written here) and central differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close

from derivgrad import gradcheck
from derivgrad.notation.op import DefinedOp


def ref_conv(x, w):
    K1, K2 = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x, (K1, K2), axis=(2, 3))
    return np.einsum("ncijuv,ocuv->noij", win, w)


def ref_residual(x, w):
    y = ref_conv(x, w)
    return y + x[:, :, 1 : 1 + y.shape[2], 1 : 1 + y.shape[3]]


def ref_batched(a, c):
    return np.einsum("bik,bkj->bij", a, c) / a.shape[2]


def ref_swapped(x, w):
    y = np.zeros((x.shape[0], w.shape[0]))
    for c in range(w.shape[1]):
        for u in range(w.shape[2]):
            y += np.outer(x[:, c + u], w[:, c, u])
    return y


def ref_split(a, b):
    U = b.shape[1]
    y = np.zeros((b.shape[0], a.shape[0] - U + 1))
    for i in range(y.shape[1]):
        y[:, i] = b @ a[i : i + U]
    return y


def ref_strided(x, w):
    return x[:, : 2 * w.shape[1] : 2] @ w.T


# definition, example shapes, reference; the comment says how the work is split
CASES = {
    # no batch index: chunks of n (alone on an axis of y), the weights packed once
    "conv": (
        "y[n, o, i, j] += x[n, c, i + u, j + v] * w[o, c, u, v]",
        dict(x=(2, 3, 6, 6), w=(4, 3, 3, 3)),
        ref_conv,
    ),
    # x read by the convolution and by a skip connection: its adjoint is the skip's loop
    # nest, then the convolution's GEMM adding to it
    "residual": (
        """h[n, o, i, j] += x[n, c, i + u, j + v] * w[o, c, u, v]
           y[n, o, i, j] = h[n, o, i, j] + x[n, o, i + 1, j + 1]""",
        dict(x=(2, 3, 6, 6), w=(3, 3, 3, 3)),
        ref_residual,
    ),
    # b in y and both factors: one batch entry per iteration; a constant factor len(k)
    "batched": (
        "y[b, i, j] += a[b, i, k] * c[b, k, j] / len(k)",
        dict(a=(2, 3, 4), c=(2, 4, 5)),
        ref_batched,
    ),
    # dx[n, c + u]: no Y index (c, u) alone on an axis of dx, so chunks of the X index n,
    # the roles swapped (x wider than the window reads: its last entries get zero)
    "swapped": ("y[n, o] += x[n, c + u] * w[o, c, u]", dict(x=(3, 6), w=(4, 3, 2)), ref_swapped),
    # da[i + u]: no index alone on its axis, so o (summed) split in chunks, partial sums and
    # a scatter whose entries collide
    "split": ("y[o, i] += a[i + u] * b[o, u]", dict(a=(7,), b=(3, 4)), ref_split),
    # a strided read packed into a contiguous matrix
    "strided": ("y[n, o] += x[n, 2*i] * w[o, i]", dict(x=(3, 8), w=(4, 4)), ref_strided),
}

OPS = {k: DefinedOp(spec, shapes, name=f"t_gemm_{k}") for k, (spec, shapes, _) in CASES.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_the_contraction_and_its_adjoints_are_lowered_to_gemm(case):
    src = OPS[case].source()
    cut = src.index("def _backward")  # the forward's phases come first, then the backward's
    forward, backward = src[:cut], src[cut:]
    # packed, or BLAS on the arrays themselves where they already are the matrices
    # (tests/test_define_direct_gemm.py)
    lowered = ("# contraction, pack + GEMM", "# contraction, direct GEMM")
    assert sum(forward.count(k) for k in lowered) == 1
    # every input's gradient is a contraction too: one GEMM per input
    assert sum(backward.count(k) for k in lowered) == len(OPS[case].inputs)


def test_a_depthwise_conv_keeps_its_loop_nest():
    # no index in the output and the weights alone (Y empty): not a GEMM
    op = DefinedOp(
        "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]", dict(x=(2, 3, 7, 7), w=(3, 3, 3))
    )
    src = op.source()
    assert "def _forward_0" in src and "# contraction" not in src


def _check(case, shapes, seed, dtype):
    _, _, ref = CASES[case]
    op = OPS[case]
    rng = np.random.default_rng(seed)
    vals = {k: rng.standard_normal(s) for k, s in shapes.items()}
    low = {k: v.astype(dtype) for k, v in vals.items()}
    y = op.forward(**low)
    assert y.dtype == np.dtype(dtype)
    expect = ref(**{k: v.astype(np.float64) for k, v in low.items()})
    assert_close(y, expect, np.dtype(dtype), f"{case} forward")
    up = rng.standard_normal(y.shape)
    grads = op.backward(up.astype(dtype), **low)
    assert all(grads[k].dtype == np.dtype(dtype) for k in grads)
    gradcheck(
        lambda **v: op.forward(**v),
        vals,
        op.backward(up, **vals),
        upstream=up,
        mode="fast",
        projections=3,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_gemm_lowering_on_drawn_sizes(case):
    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        shapes=OPS[case].strategy(), seed=st.integers(0, 2**31), dtype=st.sampled_from(["f4", "f8"])
    )
    def run(shapes, seed, dtype):
        _check(case, shapes, seed, dtype)

    run()


def test_gemm_lowering_on_sizes_that_need_several_blocks():
    # 1 << 17 elements a packed block: these sizes make every contraction take several
    # blocks and both threads' chunks
    _check("conv", dict(x=(9, 6, 20, 20), w=(7, 6, 3, 3)), 7, "f8")
    _check("split", dict(a=(3000,), b=(50, 400)), 8, "f8")
