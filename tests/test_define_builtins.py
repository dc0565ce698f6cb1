"""The built-in layers whose forward is index notation, written with ``derivgrad.define``:
the generated kernels give the hand-written kernels' outputs and gradients.  Plus hypothesis
property tests over drawn sizes and ``op.check`` on a user's backward (and a planted bug)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerances import assert_close

import derivgrad
from derivgrad import gradcheck
from derivgrad import kernels as K
from derivgrad.notation import DefinedOp

RNG = np.random.default_rng(7)


def _same(op, kernel_y, kernel_grads, upstream, **inputs):
    assert_close(op.forward(**inputs), kernel_y, np.float64, f"{op.name} forward")
    grads = op.backward(upstream, **inputs)
    for k, g in kernel_grads.items():
        assert_close(grads[k], g, np.float64, f"{op.name} d{k}")


def test_conv2d():
    op = derivgrad.define(
        "y[n, o, i, j] += x[n, c, i + u, j + v] * w[o, c, u, v]", x=(2, 3, 6, 7), w=(4, 3, 3, 2)
    )
    x, w = RNG.standard_normal((2, 3, 6, 7)), RNG.standard_normal((4, 3, 3, 2))
    up = RNG.standard_normal((2, 4, 4, 6))
    dx, dw, _ = K.conv2d_backward(up, x, w, bias=False)
    _same(op, K.conv2d_forward(x, w), {"x": dx, "w": dw}, up, x=x, w=w)


def test_conv1d_strided_dilated():
    op = derivgrad.define(
        "y[n, o, i] += x[n, c, 2*i + 2*u] * w[o, c, u]", x=(2, 3, 12), w=(2, 3, 3)
    )
    x, w = RNG.standard_normal((2, 3, 12)), RNG.standard_normal((2, 3, 3))
    y = K.conv1d_forward(x, w, stride=2, dilation=2)
    up = RNG.standard_normal(y.shape)
    dx, dw, _ = K.conv1d_backward(up, x, w, stride=2, dilation=2, bias=False)
    _same(op, y, {"x": dx, "w": dw}, up, x=x, w=w)


def test_avgpool2d():
    op = derivgrad.define(
        "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] / (len(u) * len(v))",
        ranges={"u": 2, "v": 2},
        x=(2, 3, 6, 5),
    )
    x = RNG.standard_normal((2, 3, 6, 5))
    y = K.avgpool2d_forward(x, 2)
    up = RNG.standard_normal(y.shape)
    _same(op, y, {"x": K.avgpool2d_backward(up, x.shape, 2)}, up, x=x)


def test_linear():
    op = derivgrad.define(
        "h[n, o] += x[n, i] * W[o, i]\ny[n, o] = h[n, o] + b[o]", x=(3, 4), W=(2, 4), b=(2,)
    )
    x, W, b = RNG.standard_normal((3, 4)), RNG.standard_normal((2, 4)), RNG.standard_normal(2)
    up = RNG.standard_normal((3, 2))
    dx, dW, db = K.linear_backward(up, x, W)
    _same(op, K.linear_forward(x, W, b), {"x": dx, "W": dW, "b": db}, up, x=x, W=W, b=b)


def test_relu():
    op = derivgrad.define("y[n, d] = max(z[n, d], 0)", z=(3, 4))
    z = RNG.standard_normal((3, 4))
    z[np.abs(z) < 1e-3] = 0.5  # away from the kink, where the conventions differ (see docs)
    up = RNG.standard_normal((3, 4))
    _same(op, K.relu_forward(z), {"z": K.relu_backward(up, z)}, up, z=z)


def test_softmax():
    op = derivgrad.define("m[n] += exp(z[n, j])\ny[n, i] = exp(z[n, i]) / m[n]", z=(1, 4))
    builtin = derivgrad.OPS["softmax"]
    d = builtin.build(classes=4)
    z, up = RNG.standard_normal(4), RNG.standard_normal(4)
    y, grads = builtin.kernel(d, {"z": z}, up)
    _same(op, y[None], {"z": grads["z"][None]}, up[None], z=z[None])
    assert_close(op.forward(z=z[None])[0], K.softmax(z), np.float64, "softmax")


def test_batchnorm2d():
    op = derivgrad.define(
        """
        mu[c]  += x[n, c, h, w] / (len(n) * len(h) * len(w))
        var[c] += (x[n, c, h, w] - mu[c])**2 / (len(n) * len(h) * len(w))
        y[n, c, h, w] = gamma[c] * (x[n, c, h, w] - mu[c]) / sqrt(var[c] + 1e-5) + beta[c]
        """,
        x=(2, 3, 2, 3),
        gamma=(3,),
        beta=(3,),
    )
    x = RNG.standard_normal((2, 3, 2, 3))
    g, b = RNG.standard_normal(3), RNG.standard_normal(3)
    y, cache = K.batchnorm2d_forward(x, g, b)
    up = RNG.standard_normal(y.shape)
    dx, dg, db = K.batchnorm2d_backward(up, cache)
    _same(op, y, {"x": dx, "gamma": dg, "beta": db}, up, x=x, gamma=g, beta=b)


# -- hypothesis: the generated kernels on drawn sizes --------------------------------------
# not registered at import (collection): op.check registers it while it runs
DEPTHWISE = DefinedOp(
    "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]",
    dict(x=(2, 3, 7, 7), w=(3, 3, 3)),
    name="t_prop_depthwise",
)


def _ref(x, w):
    K_ = w.shape[1]
    Ho, Wo = (x.shape[2] - K_) // 2 + 1, (x.shape[3] - w.shape[2]) // 2 + 1
    y = np.zeros(x.shape[:2] + (Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            win = x[:, :, 2 * i : 2 * i + K_, 2 * j : 2 * j + w.shape[2]]
            y[:, :, i, j] = (win * w).sum(axis=(2, 3))
    return y


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(shapes=DEPTHWISE.strategy(), seed=st.integers(0, 2**31), dtype=st.sampled_from(["f4", "f8"]))
def test_generated_kernels_on_drawn_sizes(shapes, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shapes["x"]).astype(dtype)
    w = rng.standard_normal(shapes["w"]).astype(dtype)
    y = DEPTHWISE.forward(x=x, w=w)
    assert_close(y, _ref(x.astype(float), w.astype(float)), np.dtype(dtype), "forward")
    up = rng.standard_normal(y.shape)
    xd, wd = x.astype(float), w.astype(float)
    gradcheck(
        lambda **v: DEPTHWISE.forward(**v),
        {"x": xd, "w": wd},
        DEPTHWISE.backward(up, x=xd, w=wd),
        upstream=up,
        mode="fast",
        projections=3,
    )


# -- op.check: a user's hand-written backward ------------------------------------------------
def _user_backward(dy, x, w, bug=False):
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    K_ = w.shape[1]
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            win = x[:, :, 2 * i : 2 * i + K_, 2 * j : 2 * j + w.shape[2]]
            g = dy[:, :, i, j][:, :, None, None]
            dw += (g * win).sum(axis=0)
            # the planted bug: the window starts at i, forgetting the stride
            s = (i, j) if bug else (2 * i, 2 * j)
            dx[:, :, s[0] : s[0] + K_, s[1] : s[1] + w.shape[2]] += g * w
    return {"x": dx, "w": dw}


def test_check_accepts_a_correct_user_backward_and_catches_a_planted_bug():
    good = DEPTHWISE.check(_user_backward, examples=3)
    assert good.passed and good.cases == 3, good.message
    bad = DEPTHWISE.check(
        lambda dy, **a: _user_backward(dy, **a, bug=True),
        examples=3,
        shrink=False,
        raise_on_failure=False,
    )
    assert not bad.passed
    assert "gradient of x differs from the symbolic closed form" in bad.message


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_agree(dtype):
    x, w = RNG.standard_normal((2, 3, 9, 8)), RNG.standard_normal((3, 3, 2))
    up = RNG.standard_normal((2, 3, 4, 4))
    g64 = DEPTHWISE.backward(up, x=x, w=w)
    g = DEPTHWISE.backward(up.astype(dtype), x=x.astype(dtype), w=w.astype(dtype))
    for k in g:
        assert g[k].dtype == dtype
        assert_close(g[k], g64[k], dtype, f"d{k}")
