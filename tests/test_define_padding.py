"""Zero padding in ``derivgrad.define``: ``(x[...] ?? 0)`` is ``x``'s entry inside its shape and
0 outside, with "same" ranges for the indices only such reads hold.  Every face: the kernels
in both dtypes against ``np.pad`` formulas written here (and PyTorch where installed), the
proof, the documents, the reference interpreter, and the one-line errors."""

from __future__ import annotations

import re

import notation_reference as ref
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_define_fuzz import FUZZ, check_against_reference

import derivgrad
from derivgrad.notation import DefineError

SAME = "y[n, o, i, j] += (x[n, c, i + u - 1, j + v - 1] ?? 0) * w[o, c, u, v]"
RESIDUAL = """h[n, o, i, j] += (x[n, c, i + u - 1, j + v - 1] ?? 0) * w[o, c, u, v]
y[n, o, i, j] = x[n, o, i, j] + max(h[n, o, i, j], 0)"""


def _conv_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A 3x3 convolution of the input padded by one zero on each side (np.pad)."""
    N, C, H, W = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((N, w.shape[0], H, W))
    for u in range(3):
        for v in range(3):
            out += np.einsum("ncij,oc->noij", xp[:, :, u : u + H, v : v + W], w[:, :, u, v])
    return out


def _grads_same(x, w, dy):
    """The gradients of ``Σ dy · conv_same(x, w)``, from the same padded input: dx is the
    full correlation of dy with the flipped filter, cropped back to x's shape."""
    N, C, H, W = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    for u in range(3):
        for v in range(3):
            dxp[:, :, u : u + H, v : v + W] += np.einsum("noij,oc->ncij", dy, w[:, :, u, v])
            dw[:, :, u, v] = np.einsum("noij,ncij->oc", dy, xp[:, :, u : u + H, v : v + W])
    return dxp[:, :, 1:-1, 1:-1], dw


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_a_same_convolution_needs_no_outside_pad(dtype, tol):
    op = derivgrad.define(SAME, x=(1, 2, 4, 4), w=(2, 2, 3, 3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    y = op.forward(x=x, w=w)
    assert y.shape == (2, 4, 5, 6)  # "same": the input's size
    np.testing.assert_allclose(y, _conv_same(x, w), atol=tol * 10)
    dy = rng.standard_normal(y.shape).astype(dtype)
    g = op.backward(dy, x=x, w=w)
    dx, dw = _grads_same(x, w, dy.astype(np.float64))
    np.testing.assert_allclose(g["x"], dx, atol=tol * 10)
    np.testing.assert_allclose(g["w"], dw, atol=tol * 30)
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    torch.nn.functional.conv2d(xt, wt, padding=1).backward(torch.tensor(dy.astype(np.float64)))
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), atol=tol * 10)
    np.testing.assert_allclose(g["w"], wt.grad.numpy(), atol=tol * 30)


def test_a_residual_block_needs_no_mask():
    op = derivgrad.define(RESIDUAL, x=(1, 2, 4, 4), w=(2, 2, 3, 3))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((3, 3, 3, 3))
    h = _conv_same(x, w)
    np.testing.assert_allclose(op.forward(x=x, w=w), x + np.maximum(h, 0), atol=1e-12)
    dy = rng.standard_normal(x.shape)
    g = op.backward(dy, x=x, w=w)
    dh = dy * (h > 0)
    dx, dw = _grads_same(x, w, dh)
    np.testing.assert_allclose(g["x"], dx + dy, atol=1e-10)
    np.testing.assert_allclose(g["w"], dw, atol=1e-10)


def test_strided_padded_windows_and_a_full_transposed_convolution():
    # "same" at stride 2: ceil(7 / 2) = 4 outputs; the last window reads x[7], which is 0
    pool = "y[i] max= (x[2*i + u - 1] ?? 0)"
    op = derivgrad.define(pool, x=(7,), ranges={"u": 3})
    x = np.array([0.5, -1.0, 2.0, 2.0, -3.0, -0.5, -2.0])
    xp = np.concatenate([[0.0], x, [0.0]])
    want = np.array([xp[2 * i : 2 * i + 3].max() for i in range(4)])
    np.testing.assert_array_equal(op.forward(x=x), want)
    np.testing.assert_array_equal(ref.output(pool, {"x": x}, {"u": 3}), want)
    g = op.backward(np.ones(4), x=x)["x"]
    # window 0 (0, 0.5, -1) -> x[0]; 1 (-1, 2, 2) -> x[2], the first of the tie; 2 (2, -3,
    # -0.5) -> x[3]; 3 (-0.5, -2, 0) -> the padding: no entry of x
    np.testing.assert_array_equal(g, [1, 0, 1, 1, 0, 0, 0])
    # a transposed convolution at stride 1 is the full convolution: i over [0, n + K - 1)
    full = "y[i] += (x[i - u] ?? 0) * w[u]"
    op = derivgrad.define(full, x=(5,), w=(3,), ranges={"i": 7})
    x, w = np.arange(1.0, 6.0), np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(op.forward(x=x, w=w), np.convolve(x, w))
    dy = np.random.default_rng(2).standard_normal(7)
    g = op.backward(dy, x=x, w=w)
    np.testing.assert_allclose(g["x"], np.correlate(dy, w, "valid"))
    np.testing.assert_allclose(g["w"], np.correlate(dy, x, "valid"))


@st.composite
def padded_windows(draw: st.DrawFn) -> tuple[str, dict, dict]:
    """An elementwise statement reading ``x`` at several offsets of a strided axis, some or all
    of the reads padded (an unrolled pooling window): its gradient runs in scatter form, one
    pass over the output adding each read's part, which must skip the reads that fall in the
    padding (it once wrapped them around to the far end of the axis)."""
    s = draw(st.integers(1, 2))
    offs = draw(st.lists(st.integers(-2, 2), min_size=2, max_size=3, unique=True))
    pads = draw(st.lists(st.booleans(), min_size=len(offs), max_size=len(offs)))
    pads[draw(st.integers(0, len(offs) - 1))] = True
    reads = [
        (f"(x[n, {s}*i + {c}] ?? 0)" if p else f"x[n, {s}*i + {c}]").replace("+ -", "- ")
        for c, p in zip(offs, pads)
    ]
    e = reads[0]
    for r in reads[1:]:
        form = draw(st.sampled_from(["max({a}, {b})", "min({a}, {b})", "({a} + {b})", "{a} * {b}"]))
        e = form.format(a=e, b=r)
    n = draw(st.integers(4, 8))
    return f"y[n, i] = {e}", {"x": (2, n)}, {}


@settings(max_examples=25, **FUZZ)
@given(program=padded_windows(), seed=st.integers(0, 2**16))
def test_padded_windows_in_scatter_form_agree_with_the_reference(program, seed):
    _defined(program)
    check_against_reference(program, seed, compiled=False)


@settings(max_examples=3, **FUZZ)
@given(program=padded_windows(), seed=st.integers(0, 2**16))
def test_compiled_padded_windows_agree_with_the_reference(program, seed):
    _defined(program)
    check_against_reference(program, seed, compiled=True)


def _defined(program: tuple) -> None:
    """Only definitions define() takes (an unpadded read past the end is refused, in one line;
    test_bad_padding_is_a_one_line_error)."""
    spec, shapes, _ = program
    try:
        derivgrad.define(spec, **shapes)
    except DefineError:
        assume(False)


@pytest.mark.parametrize(
    "spec, shapes, ranges",
    [
        (SAME, {"x": (1, 1, 3, 3), "w": (1, 1, 3, 3)}, None),
        (RESIDUAL, {"x": (1, 1, 3, 3), "w": (1, 1, 3, 3)}, None),
        ("y[i] max= (x[2*i + u - 1] ?? 0)", {"x": (5,)}, {"u": 3}),
        ("y[i] += (x[i - u] ?? 0) * w[u]", {"x": (3,), "w": (2,)}, {"i": 4}),
    ],
)
def test_padded_definitions_are_proved_and_printed(spec, shapes, ranges):
    op = derivgrad.define(spec, **shapes, ranges=ranges)
    d = op.derive()
    assert d.verify()
    text = str(op.sections(d))
    assert "Zero padding: $x$ at a subscript outside its shape" in text


def test_the_reference_interpreter_agrees_on_the_same_convolution():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((2, 2, 3, 3))
    np.testing.assert_allclose(ref.output(SAME, {"x": x, "w": w}), _conv_same(x, w), atol=1e-12)


@pytest.mark.parametrize(
    "spec, col, what",
    [
        ("y[i] += x[i + u - 1] ?? 0 * w[u]", 9, "'??' takes one tensor read on its left and 0"),
        ("y[i] += (x[i + u - 1] ?? 1) * w[u]", 10, "'??' takes one tensor read"),
        ("y[i] += (w[u] * x[i + u] ?? 0)", 10, "'??' takes one tensor read"),
        ("y[i] += (x[i + u] or 0) * w[u]", 19, "'or' is not part of the notation"),
        # an error quoting a padded read quotes it as written, "??" (Python reads "or")
        ("y[i] += exp(exp(exp(x[i + u] ?? 0))) * w[u]", 17, "'exp(x[i + u] ?? 0)': exponentials"),
        (
            "y[i] += x[i + u - 1] * w[u]",
            9,
            "reads [-1, 1] outside [0, 2] (zero padding: (x[...] ?? 0))",
        ),
    ],
)
def test_bad_padding_is_a_one_line_error(spec, col, what):
    with pytest.raises(DefineError, match=f"statement 1 .*column {col}: .*{re.escape(what)}") as e:
        derivgrad.define(spec, x=(3,), w=(2,), ranges={"i": 2})
    assert "\n" not in str(e.value)
