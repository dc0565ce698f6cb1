"""The convolution's input gradient by blocks of output rows (``conv_input_grad_rows``,
taken where one sample's columns outgrow ``BLOCK_BYTES``: the 7x7 stem) against the NumPy
reference.

The stem-sized images that reach it naturally are slow to check against the reference, so
here ``BLOCK_BYTES`` is lowered until every drawn convolution off the Winograd and
row-shift paths takes it, with row blocks from one output row to all of them and units of
whole samples or of channel blocks."""

from contextlib import contextmanager

import naive
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from strategies_kernels import arrays, conv2d_config
from tolerances import assert_close

from derivgrad import kernels as K
from derivgrad.kernels import conv

NAMES = ("BLOCK_BYTES", "DX_ROW_BYTES", "DX_SAMPLE_UNITS", "ROWSHIFT_MIN_ROWS")


@contextmanager
def settings(**values):
    saved = {k: getattr(conv, k) for k in NAMES}
    for k, v in values.items():
        setattr(conv, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(conv, k, v)


@given(
    conv2d_config(),
    st.sampled_from([1, 100, 1 << 30]),  # one output row a block, a few, all of them
    st.sampled_from([1, 10**6]),  # whole samples a unit, or channel blocks
)
def test_dx_by_row_blocks_matches_reference(cfg, row_bytes, sample_units):
    x, w = arrays(cfg["seed"], cfg["dtype"], cfg["shape_x"], cfg["shape_w"])
    hp = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    with settings(
        BLOCK_BYTES=1,
        DX_ROW_BYTES=row_bytes,
        DX_SAMPLE_UNITS=sample_units,
        ROWSHIFT_MIN_ROWS=10**9,
    ):
        y = K.conv2d_forward(x, w, None, **hp)
        (dy,) = arrays(cfg["seed"] + 1, cfg["dtype"], y.shape)
        dx, dw, db = K.conv2d_backward(dy, x, w, **hp)
    rdx, rdw, rdb = naive.conv2d_backward(dy, x, w, **hp)
    assert_close(y, naive.conv2d(x, w, None, **hp), cfg["dtype"], "y")
    assert_close(dx, rdx, cfg["dtype"], "dx")
    assert_close(dw, rdw, cfg["dtype"], "dw")
    assert_close(db, rdb, cfg["dtype"], "db")


def test_stem_sized_dx_takes_row_blocks_and_matches_reference():
    """A 100x100 image, 7x7 window at stride 2: its columns (147 x 2500 a sample) pass
    ``BLOCK_BYTES`` at the module's own settings."""
    x, w = arrays(5, np.float32, (3, 3, 100, 100), (16, 3, 7, 7))
    assert 3 * 49 * 50 * 50 * x.itemsize > conv.BLOCK_BYTES
    (dy,) = arrays(6, np.float32, (3, 16, 50, 50))
    dx, dw, _ = K.conv2d_backward(dy, x, w, 2, 3)
    rdx, rdw, _ = naive.conv2d_backward(dy, x, w, 2, 3)
    assert_close(dx, rdx, np.float32, "dx")
    assert_close(dw, rdw, np.float32, "dw")
