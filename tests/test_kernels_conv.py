"""conv2d / conv1d / im2col against the NumPy references, adjoint identities and
central differences."""

import naive
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies_kernels import arrays, conv2d_config
from tolerances import assert_close

from derivgrad import gradcheck
from derivgrad import kernels as K
from derivgrad.kernels import _window_kernels as _wk


@given(conv2d_config())
def test_conv2d_matches_reference(cfg):
    (
        x,
        w,
        b,
    ) = arrays(cfg["seed"], cfg["dtype"], cfg["shape_x"], cfg["shape_w"], cfg["shape_w"][:1])
    b = b if cfg["bias"] else None
    hp = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    y = K.conv2d_forward(x, w, b, **hp)
    assert_close(y, naive.conv2d(x, w, b, **hp), cfg["dtype"], "y")
    (dy,) = arrays(cfg["seed"] + 1, cfg["dtype"], y.shape)
    dx, dw, db = K.conv2d_backward(dy, x, w, **hp, bias=cfg["bias"])
    rdx, rdw, rdb = naive.conv2d_backward(dy, x, w, **hp)
    assert_close(dx, rdx, cfg["dtype"], "dx")
    assert_close(dw, rdw, cfg["dtype"], "dw")
    if cfg["bias"]:
        assert_close(db, rdb, cfg["dtype"], "db")
    else:
        assert db is None


@given(conv2d_config(max_side=6))
def test_conv2d_adjoint_identity(cfg):
    """<conv(x), v> = <x, conv_backward_input(v)> and = <w, conv_backward_weight(v)>:
    the backward is the transpose of the (bilinear) forward map."""
    (
        x,
        w,
    ) = arrays(cfg["seed"], np.float64, cfg["shape_x"], cfg["shape_w"])
    hp = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    y = K.conv2d_forward(x, w, **hp)
    (v,) = arrays(cfg["seed"] + 7, np.float64, y.shape)
    dx, dw, _ = K.conv2d_backward(v, x, w, **hp)
    assert np.isclose(np.vdot(y, v), np.vdot(x, dx), rtol=1e-12, atol=1e-12)
    assert np.isclose(np.vdot(y, v), np.vdot(w, dw), rtol=1e-12, atol=1e-12)


@given(conv2d_config(max_side=5))
def test_conv2d_central_differences(cfg):
    x, w, b = arrays(cfg["seed"], np.float64, cfg["shape_x"], cfg["shape_w"], cfg["shape_w"][:1])
    hp = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    gradcheck(
        lambda x, w, b: K.conv2d_forward(x, w, b, **hp),
        dict(x=x, w=w, b=b),
        lambda v, x, w, b: dict(zip("xwb", K.conv2d_backward(v, x, w, **hp))),
        mode="fast",
    )


@given(st.data())
def test_conv1d_is_conv2d_on_one_row(data):
    cfg = data.draw(conv2d_config())
    N, C, _, L = cfg["shape_x"]
    CO, _, _, KW = cfg["shape_w"]
    s = data.draw(st.integers(1, 3))
    p = data.draw(st.integers(0, 2))
    d = data.draw(st.integers(1, 2))
    L = max(L, d * (KW - 1) + 1 - 2 * p)
    x, w, b = arrays(cfg["seed"], cfg["dtype"], (N, C, L), (CO, C, KW), (CO,))
    y = K.conv1d_forward(x, w, b, s, p, d)
    ref = naive.conv2d(x[:, :, None], w[:, :, None], b, (1, s), (0, p), (1, d))[:, :, 0]
    assert_close(y, ref, cfg["dtype"], "y")
    (dy,) = arrays(cfg["seed"] + 1, cfg["dtype"], y.shape)
    dx, dw, db = K.conv1d_backward(dy, x, w, s, p, d)
    rdx, rdw, rdb = naive.conv2d_backward(
        dy[:, :, None], x[:, :, None], w[:, :, None], (1, s), (0, p), (1, d)
    )
    assert_close(dx, rdx[:, :, 0], cfg["dtype"], "dx")
    assert_close(dw, rdw[:, :, 0], cfg["dtype"], "dw")
    assert_close(db, rdb, cfg["dtype"], "db")


def test_conv1d_worked_problem_6():
    """x in R^4, w in R^3: dL/dx = pad(δ, 2) ⋆ flip(w) and dL/dw = x ⋆ δ."""
    x = np.array([[[1.0, -2.0, 3.0, 0.5]]])
    w = np.array([[[0.25, -1.0, 2.0]]])
    delta = np.array([[[1.5, -0.5]]])
    dx, dw, _ = K.conv1d_backward(delta, x, w)
    full = np.convolve(delta[0, 0], w[0, 0])  # pad(δ, 2) ⋆ flip(w) is a full convolution
    assert np.allclose(dx[0, 0], full)
    assert np.allclose(dw[0, 0], np.correlate(x[0, 0], delta[0, 0], mode="valid"))


@given(conv2d_config(max_side=7))
def test_im2col_matches_reference_and_col2im_is_its_adjoint(cfg):
    (x,) = arrays(cfg["seed"], cfg["dtype"], cfg["shape_x"])
    k = cfg["shape_w"][2:]
    hp = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    cols = K.im2col(x, k, **hp)
    assert_close(
        cols, naive.im2col(x, k, hp["stride"], hp["padding"], hp["dilation"]), cfg["dtype"], "cols"
    )
    # col2im(im2col(1)) counts how many windows cover each input position
    ones = np.ones_like(x)
    counts = K.col2im(K.im2col(ones, k, **hp), x.shape, k, **hp)
    ref_counts = naive.im2col(ones, k, hp["stride"], hp["padding"], hp["dilation"])
    assert counts.sum() == ref_counts.sum()
    (c,) = arrays(cfg["seed"] + 3, np.float64, cols.shape)
    x64 = x.astype(np.float64)
    assert np.isclose(
        np.vdot(K.im2col(x64, k, **hp), c), np.vdot(x64, K.col2im(c, x.shape, k, **hp))
    )


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("width_delta", [-1, 0])
@pytest.mark.parametrize("hp", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 3, 1)])
def test_im2col_and_conv_agree_on_both_sides_of_the_gather_width(batch, width_delta, hp):
    """At strides above 1, rows narrower than GATHER_BELOW_WO are gathered, wider ones
    copied row by row; at stride 1 rows inside the input are contiguous copies; all, with
    padding (rows partly outside the input), stride and dilation, give the reference.
    A batch of one splits a sample's output rows over several units."""
    s, p, d = hp
    k = 3
    wo = _wk.GATHER_BELOW_WO + width_delta
    W = (wo - 1) * s + d * (k - 1) + 1 - 2 * p
    rng = np.random.default_rng(wo + 10 * s + 100 * p)
    x = rng.standard_normal((batch, 2, 9, W))
    w = rng.standard_normal((4, 2, k, k))
    cols = K.im2col(x, k, s, p, d)
    assert cols.shape[2] % wo == 0 and cols.shape[2] // wo == (9 + 2 * p - d * (k - 1) - 1) // s + 1
    assert_close(cols, naive.im2col(x, k, s, p, d), np.float64, "cols")
    y = K.conv2d_forward(x, w, None, s, p, d)
    assert_close(y, naive.conv2d(x, w, None, s, p, d), np.float64, "y")
    dy = rng.standard_normal(y.shape)
    for got, ref in zip(
        K.conv2d_backward(dy, x, w, s, p, d, bias=False)[:2],
        naive.conv2d_backward(dy, x, w, s, p, d)[:2],
    ):
        assert_close(got, ref, np.float64)


def test_conv2d_large_batch_crosses_units():
    """A batch big enough that units span several samples and row blocks."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((37, 3, 30, 29))
    w = rng.standard_normal((7, 3, 3, 5))
    y = K.conv2d_forward(x, w, None, (2, 1), (1, 2))
    assert_close(y, naive.conv2d(x, w, None, (2, 1), (1, 2)), np.float64, "y")
    dy = rng.standard_normal(y.shape)
    for got, ref in zip(
        K.conv2d_backward(dy, x, w, (2, 1), (1, 2)), naive.conv2d_backward(dy, x, w, (2, 1), (1, 2))
    ):
        assert_close(got, ref, np.float64)


def test_conv2d_backward_without_input_gradient():
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((4, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    dy = rng.standard_normal((4, 3, 4, 4))
    dx, dw, db = K.conv2d_backward(dy, x, w, need_dx=False)
    assert dx is None
    assert_close(dw, naive.conv2d_backward(dy, x, w)[1], np.float64)


def test_conv2d_noncontiguous_and_readonly_inputs():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 6, 7, 2)).transpose(0, 3, 1, 2)  # a non-contiguous view
    w = rng.standard_normal((4, 2, 2, 2))
    w.flags.writeable = False
    assert_close(K.conv2d_forward(x, w), naive.conv2d(x, w), np.float64)


def test_conv2d_nan_propagates_to_windows_that_contain_it():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = np.nan
    y = K.conv2d_forward(x, np.ones((1, 1, 2, 2)))
    assert (
        np.isnan(y[0, 0, 0, 0])
        and np.isfinite(y[0, 0, 1:, :]).all()
        and np.isfinite(y[0, 0, :, 1:]).all()
    )


# The Winograd paths (kernels/_winograd.py): F(2x2, 3x3) and F(4x4, 3x3) kernels over drawn
# sizes, block sizes and paddings (called directly, below the channel and size thresholds
# the public functions apply), and the public functions on shapes that take each.


@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 13),
    st.integers(1, 13),
    st.integers(0, 3),
    st.integers(1, 40),
    st.sampled_from([(2, np.float32), (2, np.float64), (4, np.float32)]),
    st.integers(0, 2**16),
)
def test_winograd_kernels_match_reference(n, c, co, h, wd, pad, block, tile_dtype, seed):
    """The forward and the weight gradient (its adjoint), either tile, on one drawn case
    (F(4x4) in float32, the only dtype that takes it)."""
    from derivgrad.kernels import _winograd

    tile, dtype = tile_dtype
    h, wd = max(h, 3 - 2 * pad), max(wd, 3 - 2 * pad)
    x, w, b = arrays(seed, dtype, (n, c, h, wd), (co, c, 3, 3), (co,))
    y = _winograd.forward(x, w, b, pad, block_tiles=block, tile=tile)
    assert_close(y, naive.conv2d(x, w, b, padding=pad), dtype, "y")
    (dy,) = arrays(seed + 1, dtype, y.shape)
    dw = _winograd.weight_grad(x, dy, pad, block_tiles=block, tile=tile)
    assert_close(dw, naive.conv2d_backward(dy, x, w, padding=pad)[1], dtype, "dw")


def test_winograd_weight_grad_reads_nothing_past_dy():
    """Odd output height, even width: the last tile's dummy slot sits one element past dY.
    A NaN placed right after dY (same buffer) must not reach dW."""
    from derivgrad.kernels import _winograd

    for h, wd in ((1, 8), (3, 6), (5, 1)):
        x, w = arrays(5, np.float64, (1, 3, h, wd), (2, 3, 3, 3))
        (dy,) = arrays(6, np.float64, naive.conv2d(x, w, padding=1).shape)
        buf = np.full(dy.size + 16, np.nan)
        buf[: dy.size] = dy.ravel()
        for tile, dt in ((2, np.float64), (4, np.float32)):
            b = buf.astype(dt)
            dwt = _winograd.weight_grad(
                x.astype(dt), b[: dy.size].reshape(dy.shape), 1, block_tiles=1, tile=tile
            )
            assert_close(dwt, naive.conv2d_backward(dy, x, w, padding=1)[1], dt, "dw")


# The dtype in which the public functions take each tile (F(4x4) is float32's only).
WINOGRAD_DTYPE = {2: np.float64, 4: np.float32}


def _winograd_shapes(tile=2):
    """Channels and an output side at which the public forward takes the Winograd path
    with this output tile in float32 (float64 takes F(2x2) at both)."""
    from derivgrad.kernels import _winograd

    c, wo = _winograd.MIN_CHANNELS, (9 if tile == 2 else _winograd.MIN_SIDE4)
    assert _winograd.tile_size(c, c + 1, wo, wo, 4) == tile
    assert _winograd.tile_size(c, c + 1, wo, wo, 8) == 2  # F(4x4) is float32's only
    return c, wo


@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_path_forward_and_backward_match_reference(tile):
    from derivgrad.kernels import _winograd

    c, wo = _winograd_shapes(tile)
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        # pad 3: dX goes back to im2col (the Winograd dX would need padding 2 - pad)
        for pad, (h, wd) in ((1, (wo + 1, wo)), (0, (7, wo + 3)), (2, (5, wo - 1)), (3, (2, 3))):
            x = rng.standard_normal((3, c, h, wd)).astype(dtype)
            w = rng.standard_normal((c + 1, c, 3, 3)).astype(dtype)
            b = rng.standard_normal(c + 1).astype(dtype)
            assert _winograd.applies(c, c + 1, (3, 3), (1, 1), (1, 1))
            y = K.conv2d_forward(x, w, b, padding=pad)
            assert_close(y, naive.conv2d(x, w, b, padding=pad), dtype, f"y pad {pad}")
            dy = rng.standard_normal(y.shape).astype(dtype)
            got = K.conv2d_backward(dy, x, w, padding=pad)
            for name, g, r in zip(
                "dx dw db".split(), got, naive.conv2d_backward(dy, x, w, padding=pad)
            ):
                assert_close(g, r, dtype, f"{name} pad {pad}")


@given(
    st.integers(1, 2),
    st.integers(0, 2),
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(0, 3),
    st.sampled_from([np.float32, np.float64]),
    st.integers(0, 2**16),
)
def test_winograd_path_backward_on_drawn_sizes(n, extra, h, wd, pad, dtype, seed):
    """The public backward where it takes Winograd for dW and dX (dX by the forward kernel
    on flipped filters, padding 2 - pad; im2col's at pad 3)."""
    from derivgrad.kernels import _winograd

    c = _winograd.MIN_CHANNELS
    h, wd = max(h, 3 - 2 * pad), max(wd, 3 - 2 * pad)
    x, w = arrays(seed, dtype, (n, c, h, wd), (c + extra, c, 3, 3))
    assert _winograd.applies(c, c + extra, (3, 3), (1, 1), (1, 1))
    (dy,) = arrays(seed + 1, dtype, naive.conv2d(x, w, padding=pad).shape)
    got = K.conv2d_backward(dy, x, w, padding=pad)
    for name, g, r in zip("dx dw db".split(), got, naive.conv2d_backward(dy, x, w, padding=pad)):
        assert_close(g, r, dtype, name)


def test_winograd_path_adjoint_identity_in_float64():
    c, wo = _winograd_shapes(2)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, c, wo + 2, wo + 2))
    w = rng.standard_normal((c, c, 3, 3))
    y = K.conv2d_forward(x, w)
    v = rng.standard_normal(y.shape)
    dx, dw, _ = K.conv2d_backward(v, x, w)
    assert np.isclose(np.vdot(y, v), np.vdot(x, dx), rtol=1e-12, atol=1e-12)
    assert np.isclose(np.vdot(y, v), np.vdot(w, dw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_path_non_finite_reaches_exactly_the_windows_that_hold_it(tile):
    """An inf or NaN input makes the outputs whose 3x3 windows hold it non-finite (an inf
    may come out as NaN: the transforms subtract it from itself) and no others: F(4x4)
    would spread it over its tile, and the forward then takes F(2x2)."""
    c, wo = _winograd_shapes(tile)
    dt = WINOGRAD_DTYPE[tile]
    for bad in (np.nan, np.inf, -np.inf):
        for r, q in ((0, 0), (3, 5), (5, wo + 1)):
            x = np.ones((1, c, wo + 2, wo + 2), dt)
            x[0, 1, r, q] = bad
            y = K.conv2d_forward(x, np.ones((c, c, 3, 3), dt))
            held = np.zeros(y.shape[2:], bool)
            held[max(0, r - 2) : r + 1, max(0, q - 2) : q + 1] = True
            assert (~np.isfinite(y[0])).all(axis=0).tolist() == held.tolist()
            assert np.isfinite(y[0][:, ~held]).all()


@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_path_weight_gradient_is_non_finite_exactly_where_the_direct_sum_is(tile):
    """Winograd's transforms would spread a non-finite input over a whole tile's taps; the
    weight gradient then comes from the direct sum, whose IEEE semantics say which taps."""
    c, wo = _winograd_shapes(tile)
    dt = WINOGRAD_DTYPE[tile]
    for bad in (np.nan, np.inf, -np.inf):
        for r, q in ((0, 0), (3, 5), (5, wo + 1)):
            x = np.ones((1, c, wo + 2, wo + 2), dt)
            x[0, 1, r, q] = bad
            w = np.ones((c, c, 3, 3), dt)
            dy = np.ones(K.conv2d_forward(x, w).shape, dt)
            _, dw, _ = K.conv2d_backward(dy, x, w)
            ref = naive.conv2d_backward(dy, x, w)[1]
            assert np.isfinite(dw).tolist() == np.isfinite(ref).tolist()
            assert_close(dw[np.isfinite(ref)], ref[np.isfinite(ref)], dt, "dw")


def test_winograd_f4_path_redoes_on_f2_exactly_when_its_result_is_not_finite(monkeypatch):
    """A finite input whose F(4x4) transforms overflow float32 (25 x 2e37) gives the direct
    sum's finite result through F(2x2); a plain input never calls F(2x2)."""
    from derivgrad.kernels import _winograd

    c, wo = _winograd_shapes(4)
    calls = []
    f2 = _winograd.winograd_forward

    def counted(*args):
        calls.append(1)
        return f2(*args)

    monkeypatch.setattr(_winograd, "winograd_forward", counted)
    x = np.ones((1, c, wo + 2, wo + 2), np.float32)
    w = np.full((c, c, 3, 3), 1e-3, np.float32)
    assert_close(K.conv2d_forward(x, w), naive.conv2d(x, w), np.float32, "plain")
    assert calls == []
    x[0, 0, 10, 10] = 2e37  # row and column 2 of a tile: Bᵀ d B multiplies it by 25
    y = K.conv2d_forward(x, w)
    assert calls == [1] and np.isfinite(y).all()
    assert_close(y, naive.conv2d(x, w), np.float32, "overflowing F(4x4)")


@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_path_non_finite_weight_reaches_exactly_what_the_direct_sum_does(tile):
    """An inf in W: the filter transform would spread it over all nine taps and make every
    dX entry of its input channel NaN; the direct sum leaves the border entries that the
    tap never reaches finite, and so must the backward."""
    c, wo = _winograd_shapes(tile)
    dt = WINOGRAD_DTYPE[tile]
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, c, wo + 2, wo + 2)).astype(dt)
    for tap in ((1, 1), (0, 2)):
        w = rng.standard_normal((c + 1, c, 3, 3)).astype(dt)
        w[3, 2][tap] = np.inf
        y = K.conv2d_forward(x, w)
        dy = rng.standard_normal(y.shape).astype(dt)
        for name, g, r in zip(
            "y dx dw db".split(),
            (y, *K.conv2d_backward(dy, x, w)),
            (naive.conv2d(x, w), *naive.conv2d_backward(dy, x, w)),
        ):
            assert np.isfinite(g).tolist() == np.isfinite(r).tolist(), name
            assert_close(g[np.isfinite(r)], r[np.isfinite(r)], dt, name)


def test_kernels_read_the_window_geometry_by_name():
    # geo[8] meant "HO" only to whoever remembered the tuple's order; Geometry names it
    import ast
    from pathlib import Path

    import derivgrad.kernels as kernels_pkg

    for path in Path(kernels_pkg.__path__[0]).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "geo":
                raise AssertionError(f"{path.name}:{node.lineno}: geo indexed by position")
            if isinstance(node, ast.Assign) and getattr(node.value, "id", None) == "geo":
                raise AssertionError(f"{path.name}:{node.lineno}: geo unpacked by position")


def test_geometry_is_the_one_output_size():
    from derivgrad.kernels import output_size
    from derivgrad.kernels._geometry import geometry2d

    g = geometry2d((11, 9), (3, 2), (2, 1), (1, 0), (2, 3))
    assert (g.ho, g.wo) == (output_size(11, 3, 2, 1, 2), output_size(9, 2, 1, 0, 3))
    assert g.kernel == (3, 2) and g.stride == (2, 1) and g.padding == (1, 0)
    assert g.dilation == (2, 3) and all(type(v) is int for v in g)
