"""linear, ReLU, softmax, softmax cross-entropy and batch norm."""

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies_kernels import DTYPES, arrays, distinct
from tolerances import assert_close

from derivgrad import gradcheck
from derivgrad import kernels as K


@given(distinct(3, 1, 9), DTYPES, st.booleans(), st.integers(0, 2**31 - 1))
def test_linear(dims, dtype, bias, seed):
    N, IN, OUT = dims
    x, w, b, dy = arrays(seed, dtype, (N, IN), (OUT, IN), (OUT,), (N, OUT))
    b = b if bias else None
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    ref = x64 @ w64.T + (0 if b is None else b.astype(np.float64))
    assert_close(K.linear_forward(x, w, b), ref, dtype, "y")
    dx, dw, db = K.linear_backward(dy, x, w, bias=bias)
    assert_close(dx, np.einsum("no,oi->ni", dy64, w64), dtype, "dx")
    assert_close(dw, np.einsum("no,ni->oi", dy64, x64), dtype, "dw")
    assert (db is None) if not bias else np.allclose(db, dy64.sum(0), rtol=1e-4)
    x, w, b = arrays(seed, np.float64, (N, IN), (OUT, IN), (OUT,))
    gradcheck(
        lambda x, w, b: K.linear_forward(x, w, b),
        dict(x=x, w=w, b=b),
        lambda v, x, w, b: dict(zip("xwb", K.linear_backward(v, x, w))),
    )


@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), DTYPES, st.integers(0, 2**31 - 1))
def test_relu(shape, dtype, seed):
    x, dy = arrays(seed, dtype, tuple(shape), tuple(shape))
    assert_close(K.relu_forward(x), np.maximum(x.astype(np.float64), 0), dtype, "y")
    assert_close(K.relu_backward(dy, x), dy * (x > 0), dtype, "dx")


def test_relu_kink_and_nan():
    x = np.array([-1.0, 0.0, 2.0, np.nan])
    assert np.array_equal(K.relu_backward(np.ones(4), x), [0.0, 0.0, 1.0, 0.0])  # relu'(0) = 0
    y = K.relu_forward(x)
    assert y[1] == 0 and np.isnan(y[3])


@given(st.integers(1, 6), st.integers(1, 7), DTYPES, st.integers(0, 2**31 - 1))
def test_softmax_and_cross_entropy(n, k, dtype, seed):
    (z,) = arrays(seed, dtype, (n, k))
    z = (z * 10).astype(dtype)
    labels = np.random.default_rng(seed).integers(0, k, n)
    assert_close(K.softmax(z), naive.softmax(z), dtype, "p")
    loss, p = K.softmax_cross_entropy_forward(z, labels)
    rloss, rgrad = naive.xent(z, labels)
    assert abs(loss - rloss) <= (1e-10 if dtype == np.float64 else 1e-4) * max(1.0, abs(rloss))
    g = K.softmax_cross_entropy_backward(p, labels)
    assert_close(g, rgrad, dtype, "dz", scale=1.0 / n)  # terms p/n and 1/n
    assert np.allclose(g.sum(axis=1), 0, atol=1e-6)  # rows of p - e_y sum to zero


def test_softmax_is_stable_for_huge_logits():
    p = K.softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    assert np.allclose(p, [[0.5, 0.5, 0.0]])
    loss, _ = K.softmax_cross_entropy_forward(np.array([[1e4, 0.0]]), np.array([1]))
    assert loss == pytest.approx(1e4)


def test_cross_entropy_central_differences():
    rng = np.random.default_rng(3)
    z, y = rng.standard_normal((4, 5)), rng.integers(0, 5, 4)
    gradcheck(
        lambda z: K.softmax_cross_entropy_forward(z, y)[0],
        dict(z=z),
        dict(z=K.softmax_cross_entropy_backward(K.softmax(z), y)),
    )


@given(distinct(3, 1, 4), st.integers(1, 4), DTYPES, st.integers(0, 2**31 - 1))
def test_batchnorm_training(dims, hw, dtype, seed):
    N, C, H = dims
    W = hw
    if N * H * W < 2:
        N += 1
    x, g, b, dy = arrays(seed, dtype, (N, C, H, W), (C,), (C,), (N, C, H, W))
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    y, cache = K.batchnorm2d_forward(x, g, b, 1e-5, True, rm, rv, 0.1)
    ry, mu, var, back = naive.batchnorm2d(x, g.astype(np.float64), b.astype(np.float64), 1e-5)
    assert_close(y, ry, dtype, "y")
    M = N * H * W
    assert_close(rm, 0.1 * mu, dtype, "running_mean")
    assert_close(rv, 0.9 + 0.1 * var * M / (M - 1), dtype, "running_var")
    dx, dg, db = K.batchnorm2d_backward(dy, cache)
    rdx, rdg, rdb = back(dy)
    # dx is a difference of O(1) terms that cancel; in float32 the scale of the terms,
    # not of dx, bounds the error
    assert_close(dx, rdx, dtype, "dx") if dtype == np.float64 else np.testing.assert_allclose(
        dx, rdx, atol=1e-4 * np.abs(dy).max() * np.abs(g).max() * 10
    )
    assert_close(dg, rdg, dtype, "dgamma")
    assert_close(db, rdb, dtype, "dbeta")


def test_batchnorm_central_differences_with_nonuniform_upstream():
    rng = np.random.default_rng(4)
    x, g, b = rng.standard_normal((3, 2, 2, 3)), rng.standard_normal(2), rng.standard_normal(2)
    f = lambda x, g, b: K.batchnorm2d_forward(x, g, b)[0]
    gradcheck(
        f,
        dict(x=x, g=g, b=b),
        lambda v, x, g, b: dict(
            zip("xgb", K.batchnorm2d_backward(v, K.batchnorm2d_forward(x, g, b)[1]))
        ),
    )


def test_batchnorm_eval_uses_running_statistics():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 2, 2))
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    g, b = rng.standard_normal(3), rng.standard_normal(3)
    y, cache = K.batchnorm2d_forward(x, g, b, 1e-5, False, rm.copy(), rv.copy())
    ref = (x - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5) * g[:, None, None] + b[
        :, None, None
    ]
    assert_close(y, ref, np.float64)
    gradcheck(
        lambda x: K.batchnorm2d_forward(x, g, b, 1e-5, False, rm, rv)[0],
        dict(x=x),
        lambda v, x: dict(x=K.batchnorm2d_backward(v, cache)[0]),
    )
