"""Max and average pooling against loop references, with overlapping windows, padding,
ties and NaN."""

import naive
import numpy as np
from hypothesis import given
from strategies_kernels import arrays, pool_config
from tolerances import assert_close

from derivgrad import gradcheck
from derivgrad import kernels as K


@given(pool_config())
def test_maxpool_matches_reference(cfg):
    (x,) = arrays(cfg["seed"], cfg["dtype"], cfg["shape"], distinct_values=True)
    hp = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"])
    y, idx = K.maxpool2d_forward(x, **hp)
    ry, ridx = naive.maxpool2d(x, hp["kernel_size"], hp["stride"], hp["padding"])
    assert_close(y, ry, cfg["dtype"], "y")
    assert np.array_equal(idx, ridx)
    (dy,) = arrays(cfg["seed"] + 1, cfg["dtype"], y.shape)
    assert_close(
        K.maxpool2d_backward(dy, idx, x.shape),
        naive.maxpool2d_backward(dy, ridx, x.shape),
        cfg["dtype"],
        "dx",
    )


@given(pool_config(max_side=6))
def test_maxpool_ties_route_to_the_first_maximum(cfg):
    """All-equal windows: every gradient goes to the first valid position in row-major
    order (the reference implements that rule by its strict comparison)."""
    x = np.zeros(cfg["shape"], dtype=cfg["dtype"])
    hp = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"])
    _, idx = K.maxpool2d_forward(x, **hp)
    assert np.array_equal(
        idx, naive.maxpool2d(x, hp["kernel_size"], hp["stride"], hp["padding"])[1]
    )


@given(pool_config(max_side=6))
def test_maxpool_central_differences(cfg):
    (x,) = arrays(cfg["seed"], np.float64, cfg["shape"], distinct_values=True)
    hp = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"])

    def grads(v, x):
        _, idx = K.maxpool2d_forward(x, **hp)
        return dict(x=K.maxpool2d_backward(v, idx, x.shape))

    # distinct values are >= 1/size apart, far more than the step: no winner changes
    gradcheck(lambda x: K.maxpool2d_forward(x, **hp)[0], dict(x=x), grads, mode="fast")


@given(pool_config())
def test_avgpool_matches_reference(cfg):
    (x,) = arrays(cfg["seed"], cfg["dtype"], cfg["shape"])
    hp = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"])
    y = K.avgpool2d_forward(x, **hp)
    assert_close(
        y, naive.avgpool2d(x, hp["kernel_size"], hp["stride"], hp["padding"]), cfg["dtype"], "y"
    )
    (dy,) = arrays(cfg["seed"] + 1, cfg["dtype"], y.shape)
    dx = K.avgpool2d_backward(dy, x.shape, **hp)
    assert_close(
        dx,
        naive.avgpool2d_backward(dy, x.shape, hp["kernel_size"], hp["stride"], hp["padding"]),
        cfg["dtype"],
        "dx",
    )


@given(pool_config())
def test_avgpool_gradient_sum(cfg):
    """Without padding every window lies inside x, so dx sums to Σ dy (each dy is spread
    as dy/K² over K² positions); with padding, the padded share is dropped."""
    (N, C, H, W), (KH, KW) = cfg["shape"], cfg["kernel_size"]
    (x,) = arrays(cfg["seed"], np.float64, (N, C, max(H, KH), max(W, KW)))
    hp = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=(0, 0))
    y = K.avgpool2d_forward(x, **hp)
    (dy,) = arrays(cfg["seed"] + 1, np.float64, y.shape)
    assert np.isclose(K.avgpool2d_backward(dy, x.shape, **hp).sum(), dy.sum())


def test_avgpool_k_equals_s_is_upsampling():
    dy = np.arange(6.0).reshape(1, 1, 2, 3)
    dx = K.avgpool2d_backward(dy, (1, 1, 4, 6), 2)
    assert np.array_equal(dx[0, 0], np.kron(dy[0, 0], np.ones((2, 2))) / 4)


def test_maxpool_nan_wins_and_padding_is_minus_infinity():
    x = np.full((1, 1, 3, 3), -5.0)
    x[0, 0, 1, 1] = np.nan
    y, idx = K.maxpool2d_forward(x, 2, 1)
    assert np.isnan(y).all() and (idx == 4).all()
    y, idx = K.maxpool2d_forward(np.full((1, 1, 2, 2), -7.0), 2, 1, 1)
    assert (y == -7.0).all()  # padding never wins, even against negative values


@given(pool_config(max_side=9))
def test_maxpool_2x2_fast_path_agrees_with_the_generic_kernel(cfg):
    """The 2x2/2 specialisation against the reference, including ties and NaN."""
    N, C, H, W = cfg["shape"]
    (x,) = arrays(cfg["seed"], cfg["dtype"], (N, C, max(H, 2), max(W, 2)))
    x = np.round(x, 0)  # plenty of ties
    y, idx = K.maxpool2d_forward(x, 2)
    ry, ridx = naive.maxpool2d(x, 2)
    assert np.array_equal(idx, ridx) and np.array_equal(y, ry.astype(x.dtype))
    x[0, 0, 0, 1] = np.nan
    y, idx = K.maxpool2d_forward(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1
