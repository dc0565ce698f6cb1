"""The convolutions' row-shift path (kernels/_rowshift_kernels.py) against the NumPy
references.

Its own threshold (C_in * KW >= 32) keeps the small drawn shapes of test_kernels_conv.py on
im2col, so here the threshold is lifted: every drawn convolution with row stride 1 takes
the path, at every padding, column stride and dilation, and unit sizes from one sample to
the whole batch (the last unit short)."""

from contextlib import contextmanager

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies_kernels import arrays, conv2d_config
from tolerances import assert_close

from derivgrad import kernels as K
from derivgrad.kernels import conv
from derivgrad.kernels._geometry import geometry2d


@contextmanager
def rowshift_for_all(block_bytes=conv.ROWSHIFT_BLOCK_BYTES):
    saved = conv.ROWSHIFT_MIN_ROWS, conv.ROWSHIFT_BLOCK_BYTES
    conv.ROWSHIFT_MIN_ROWS, conv.ROWSHIFT_BLOCK_BYTES = 0, block_bytes
    try:
        yield
    finally:
        conv.ROWSHIFT_MIN_ROWS, conv.ROWSHIFT_BLOCK_BYTES = saved


def _check(x, w, b, hp, dtype, seed, need_dx=True):
    y = K.conv2d_forward(x, w, b, **hp)
    assert_close(y, naive.conv2d(x, w, b, **hp), dtype, "y")
    (dy,) = arrays(seed + 1, dtype, y.shape)
    dx, dw, db = K.conv2d_backward(dy, x, w, **hp, bias=b is not None, need_dx=need_dx)
    rdx, rdw, rdb = naive.conv2d_backward(dy, x, w, **hp)
    if need_dx:
        assert_close(dx, rdx, dtype, "dx")
    else:
        assert dx is None
    assert_close(dw, rdw, dtype, "dw")
    if b is not None:
        assert_close(db, rdb, dtype, "db")
    else:
        assert db is None


@given(
    conv2d_config(),
    st.sampled_from([1, 200, 1 << 20]),  # one sample a unit, a few, the whole batch
    st.booleans(),
)
def test_rowshift_matches_reference(cfg, block_bytes, need_dx):
    x, w, b = arrays(cfg["seed"], cfg["dtype"], cfg["shape_x"], cfg["shape_w"], cfg["shape_w"][:1])
    hp = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    with rowshift_for_all(block_bytes):
        _check(x, w, b if cfg["bias"] else None, hp, cfg["dtype"], cfg["seed"], need_dx)


# LeNet's conv2 takes the path at its own threshold; odd batches split units unevenly.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape_x, shape_w, hp",
    [
        ((64, 20, 12, 12), (50, 20, 5, 5), {}),
        ((7, 20, 12, 12), (50, 20, 5, 5), {}),
        ((3, 12, 9, 10), (5, 12, 3, 4), dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1))),
        ((5, 33, 1, 14), (4, 33, 1, 3), dict(padding=(0, 2), dilation=(1, 3))),
    ],
)
def test_rowshift_at_its_threshold(shape_x, shape_w, hp, dtype):
    pair = lambda v: v if isinstance(v, tuple) else (v, v)
    geo = geometry2d(
        shape_x[2:],
        shape_w[2:],
        *(pair(hp.get(k, d)) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1))),
    )
    assert conv._takes_rowshift(shape_x[1], geo)
    x, w, b = arrays(3, dtype, shape_x, shape_w, shape_w[:1])
    _check(x, w, b, hp, dtype, 3)
    _check(x, w, None, hp, dtype, 4, need_dx=False)


def test_rowshift_nan_stays_in_its_windows():
    """A NaN in x reaches exactly the outputs whose windows hold it, and dW's taps that
    read it; a NaN in w reaches exactly the dx entries its tap touches."""
    x = np.ones((2, 8, 7, 7))
    x[1, 3, 2, 5] = np.nan
    w = np.ones((3, 8, 3, 5))
    with rowshift_for_all():
        y = K.conv2d_forward(x, w, padding=1)
        ref = naive.conv2d(x, w, padding=1)
        assert np.array_equal(np.isnan(y), np.isnan(ref))
        dy = np.ones_like(y)
        w2 = w.copy()
        w2[1, 4, 0, 2] = np.nan
        dx, dw, _ = K.conv2d_backward(dy, np.ones_like(x), w2, padding=1)
        rdx, rdw, _ = naive.conv2d_backward(dy, np.ones_like(x), w2, padding=1)
        assert np.array_equal(np.isnan(dx), np.isnan(rdx))
        assert np.isnan(dx).any() and not np.isnan(dx).all()
        _, dw, _ = K.conv2d_backward(dy, x, w, padding=1)
        _, rdw, _ = naive.conv2d_backward(dy, x, w, padding=1)
        assert np.array_equal(np.isnan(dw), np.isnan(rdw))
