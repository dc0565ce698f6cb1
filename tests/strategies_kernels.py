"""Hypothesis strategies that draw only valid kernel configurations: the hyper-parameters
first, then sizes that fit them; N, C, C_out drawn distinct so that a reduction over the
wrong axis cannot pass by coincidence."""

import numpy as np
from hypothesis import strategies as st

DTYPES = st.sampled_from([np.float32, np.float64])


@st.composite
def distinct(draw, k, lo=1, hi=5):
    return draw(st.lists(st.integers(lo, hi), min_size=k, max_size=k, unique=True))


@st.composite
def conv2d_config(draw, max_side=9):
    N, C, CO = draw(distinct(3, 1, 5))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    H = draw(st.integers(max(1, dh * (KH - 1) + 1 - 2 * ph), max_side + 2))
    W = draw(st.integers(max(1, dw * (KW - 1) + 1 - 2 * pw), max_side + 2))
    as_pairs = draw(st.booleans())
    hp = lambda a, b: (a, b) if as_pairs or a != b else a
    return dict(
        shape_x=(N, C, H, W),
        shape_w=(CO, C, KH, KW),
        stride=hp(sh, sw),
        padding=hp(ph, pw),
        dilation=hp(dh, dw),
        bias=draw(st.booleans()),
        dtype=draw(DTYPES),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@st.composite
def pool_config(draw, max_side=10):
    N, C = draw(distinct(2, 1, 4))
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    # stride smaller than the window half the time: overlapping windows
    sh, sw = draw(st.integers(1, KH)), draw(st.integers(1, KW))
    ph, pw = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
    H = draw(st.integers(max(1, KH - 2 * ph), max_side))
    W = draw(st.integers(max(1, KW - 2 * pw), max_side))
    stride = draw(st.sampled_from([None, (sh, sw)]))
    return dict(
        shape=(N, C, H, W),
        kernel_size=(KH, KW),
        stride=stride,
        padding=(ph, pw),
        dtype=draw(DTYPES),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def arrays(seed, dtype, *shapes, distinct_values=False):
    """Seeded standard-normal arrays; with distinct_values, no ties within an array
    (a permutation of well-separated values), for piecewise ops such as max pooling."""
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        if distinct_values:
            n = int(np.prod(s))
            out.append((rng.permutation(n) / max(n, 1) - 0.5).reshape(s).astype(dtype))
        else:
            out.append(rng.standard_normal(s).astype(dtype))
    return out
