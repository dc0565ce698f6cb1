"""Integer division and remainder in subscripts of ``derivgrad.define`` (``x[i // 2]``,
``x[c*4 + (i % 2)*2 + j % 2]``) and the exact division of a padded read (``(x[(i - u) / 2] ??
0)``, 0 where 2 does not divide ``i - u``): nearest upsampling, pixel shuffle and its inverse,
a strided transposed convolution with no zero-dilated input.  Every face: the kernels against
NumPy formulas written here (and PyTorch where installed), the reference interpreter, the
proof, the documents, and the one-line errors."""

from __future__ import annotations

import re

import notation_reference as ref
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_define_fuzz import check_against_reference

import derivgrad
from derivgrad.documents.render import render
from derivgrad.notation import DefineError

UPSAMPLE = "y[n, c, i, j] = x[n, c, i // 2, j // 2]"
SHUFFLE = "y[n, c, i, j] = x[n, c*4 + (i % 2)*2 + j % 2, i // 2, j // 2]"
UNSHUFFLE = "y[n, c, i, j] = x[n, c // 4, 2*i + (c % 4) // 2, 2*j + c % 2]"
TCONV1 = "y[n, o, i] += (x[n, c, (i - u) / 2] ?? 0) * w[c, o, u]"
FORMATS = ("latex", "typst", "markdown", "html", "text")
TCONV2 = "y[n, o, i, j] += (x[n, c, (i - u) / 2, (j - v) / 2] ?? 0) * w[c, o, u, v]"


def _shuffle(x: np.ndarray, r: int = 2) -> np.ndarray:
    """PyTorch's pixel_shuffle as reshapes: channel c*r*r + a*r + b goes to (r*i + a, r*j + b)."""
    n, c, h, w = x.shape
    return (
        x.reshape(n, c // r**2, r, r, h, w)
        .transpose(0, 1, 4, 2, 5, 3)
        .reshape(n, c // r**2, h * r, w * r)
    )


def _unshuffle(y: np.ndarray, r: int = 2) -> np.ndarray:
    n, c, h, w = y.shape
    return (
        y.reshape(n, c, h // r, r, w // r, r)
        .transpose(0, 1, 3, 5, 2, 4)
        .reshape(n, c * r * r, h // r, w // r)
    )


def _tconv(x: np.ndarray, w: np.ndarray, s: int = 2) -> np.ndarray:
    """A transposed convolution (stride s, no padding) as a scatter of each input entry."""
    n, c, *size = x.shape
    _, o, *k = w.shape
    out = np.zeros((n, o, *[(m - 1) * s + kk for m, kk in zip(size, k)]))
    for pos in np.ndindex(*size):
        for off in np.ndindex(*k):
            at = tuple(s * p + q for p, q in zip(pos, off))
            out[(slice(None), slice(None), *at)] += np.einsum(
                "nc,co->no",
                x[(slice(None), slice(None), *pos)],
                w[(slice(None), slice(None), *off)],
            )
    return out


def _central(f, x: np.ndarray, dy: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (np.sum(dy * f(x + e)) - np.sum(dy * f(x - e))) / (2 * eps)
    return g


def test_nearest_upsampling():
    op = derivgrad.define(UPSAMPLE, x=(1, 2, 3, 3))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    y = op.forward(x=x)
    assert y.shape == (2, 3, 8, 10)  # i // 2 <= 3: i over [0, 8)
    up = np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)
    np.testing.assert_array_equal(y, up)
    dy = rng.standard_normal(y.shape)
    g = op.backward(dy, x=x)["x"]
    # each entry gathers its 2x2 block of the upstream
    np.testing.assert_allclose(g, dy.reshape(2, 3, 4, 2, 5, 2).sum(axis=(3, 5)), atol=1e-12)
    small = rng.standard_normal((1, 1, 2, 3))
    dys = rng.standard_normal((1, 1, 4, 6))
    central = _central(lambda a: np.repeat(np.repeat(a, 2, 2), 2, 3), small, dys)
    np.testing.assert_allclose(op.backward(dys, x=small)["x"], central, atol=1e-8)
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(xt, scale_factor=2, mode="nearest")
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(g, xt.grad.numpy(), atol=1e-12)


def test_pixel_shuffle_and_its_inverse():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 3, 4))
    op = derivgrad.define(SHUFFLE, x=(1, 4, 2, 2))
    y = op.forward(x=x)
    np.testing.assert_array_equal(y, _shuffle(x))
    dy = rng.standard_normal(y.shape)
    g = op.backward(dy, x=x)["x"]
    np.testing.assert_array_equal(g, _unshuffle(dy))  # a permutation: its adjoint is its inverse
    inv = derivgrad.define(UNSHUFFLE, x=(1, 1, 4, 4))
    z = inv.forward(x=y)
    assert z.shape == x.shape
    np.testing.assert_array_equal(z, x)
    np.testing.assert_array_equal(
        inv.backward(dy := rng.standard_normal(x.shape), x=y)["x"], _shuffle(dy)
    )
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.pixel_shuffle(xt, 2)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(z, torch.nn.functional.pixel_unshuffle(yt, 2).detach().numpy())


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_a_strided_transposed_convolution_without_a_dilated_input(dtype, tol):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5)).astype(dtype)
    w = rng.standard_normal((3, 4, 3)).astype(dtype)
    op = derivgrad.define(TCONV1, x=x.shape, w=w.shape, ranges={"i": 11})
    y = op.forward(x=x, w=w)
    want = _tconv(x.astype(np.float64), w.astype(np.float64))
    np.testing.assert_allclose(y, want, atol=tol * 10)
    dy = rng.standard_normal(y.shape).astype(dtype)
    g = op.backward(dy, x=x, w=w)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    np.testing.assert_allclose(
        g["x"], _central(lambda a: _tconv(a, w64), x64, dy64), atol=tol * 1e3
    )
    np.testing.assert_allclose(
        g["w"], _central(lambda b: _tconv(x64, b), w64, dy64), atol=tol * 1e3
    )
    np.testing.assert_allclose(
        ref.output(TCONV1, {"x": x64, "w": w64}, {"i": 11}), want, atol=1e-12
    )
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x64, requires_grad=True)
    wt = torch.tensor(w64, requires_grad=True)
    torch.nn.functional.conv_transpose1d(xt, wt, stride=2).backward(torch.tensor(dy64))
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), atol=tol * 10)
    np.testing.assert_allclose(g["w"], wt.grad.numpy(), atol=tol * 30)


def test_a_strided_transposed_convolution_2d_against_torch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 3, 4))
    w = rng.standard_normal((2, 3, 3, 2))
    op = derivgrad.define(TCONV2, x=x.shape, w=w.shape, ranges={"i": 7, "j": 8})
    y = op.forward(x=x, w=w)
    np.testing.assert_allclose(y, _tconv(x, w), atol=1e-12)
    dy = rng.standard_normal(y.shape)
    g = op.backward(dy, x=x, w=w)
    np.testing.assert_allclose(g["x"], _central(lambda a: _tconv(a, w), x, dy), atol=1e-7)
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv_transpose2d(xt, wt, stride=2).backward(torch.tensor(dy))
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), atol=1e-11)
    np.testing.assert_allclose(g["w"], wt.grad.numpy(), atol=1e-11)


@pytest.mark.parametrize(
    "spec, shapes, ranges",
    [
        ("y[i] = x[i // 2]", {"x": (3,)}, None),
        ("y[c, i] = x[c*2 + i % 2, i // 2]", {"x": (4, 2)}, None),
        ("y[i] = x[(i + 1) // 3] * x[i % 2]", {"x": (3,)}, {"i": 7}),
        ("y[i] += (x[(i - u) / 2] ?? 0) * w[u]", {"x": (3,), "w": (3,)}, {"i": 7}),
        # dw sums over every point here: exp of a padded read is 1, not 0, where it is 0
        ("y[i] += exp(x[(i - u) / 2] ?? 0) * w[u]", {"x": (3,), "w": (3,)}, {"i": 7}),
        ("y[i] max= x[(2*i + u) // 2] * w[u % 2]", {"x": (5,), "w": (2,)}, {"u": 3}),
        ("y[i] += exp(x[(i + u) // 2]) * (w[(i - u) / 2] ?? 0)", {"x": (4,), "w": (2,)}, {"u": 3}),
    ],
)
def test_division_definitions_are_proved_and_agree_with_the_reference(spec, shapes, ranges):
    op = derivgrad.define(spec, **shapes, ranges=ranges)
    d = op.derive()
    assert d.verify()
    # the kernels' loop nests run as plain Python (no compile) against the interpreter
    check_against_reference((spec, shapes, ranges), 4, compiled=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_documents_print_division_and_remainder_in_every_format(fmt):
    # floor, remainder and exact division reach a document in the arg-max of a max= statement
    d = derivgrad.define(
        "y[i] max= (x[(2*i + u) // 2] ?? 0) * w[u % 2] + (x[(i - u) / 2] ?? 0)",
        x=(5,),
        w=(2,),
        ranges={"u": 3, "i": 4},
    ).derive()
    text = render(d, fmt)
    assert re.search(r"not\s+divide", text)  # the exact division's zero, said once
    if fmt == "latex":
        assert r"\left\lfloor" in text and r"\operatorname{mod} 2" in text
        assert r"\texttt{y[i] max= (x[(2*i + u) // 2] ?? 0) * w[u \% 2]" in text
    if fmt == "text":
        assert "⌊" in text and "mod 2" in text


@pytest.mark.parametrize(
    "spec, col, what",
    [
        ("y[i] = x[i // 0]", 10, "'i // 0' divides by zero"),
        ("y[i] = x[i % 0]", 10, "'i % 0' divides by zero"),
        ("y[i] = x[i // -2]", 15, "divides by the negative -2"),
        ("y[i] = x[i // 2.0]", 10, "holds a float constant"),
        ("y[i] = x[i % 1.5]", 10, "holds a float constant"),
        ("y[i, j] = x[i // j]", 18, "divides by an index"),
        ("y[i] = x[i // x[0]]", 15, "divides by a tensor value"),
        ("y[i] += x[(i - u) / 2] * w[u]", 11, "an exact division is a whole position only"),
        ("y[i] = x[i] // 2", 8, "'//' and '%' are integer division and remainder of subscripts"),
        ("y[i] = x[i % 2]", 10, "read only inside 'i % 2', which bounds no range"),
        ("y[i] = x[(i // 2) * (i % 2)]", 10, "is not affine in the indices"),
    ],
)
def test_bad_divisions_are_one_line_errors(spec, col, what):
    with pytest.raises(DefineError, match=f"statement 1 .*column {col}: .*{re.escape(what)}") as e:
        derivgrad.define(spec, x=(3,), w=(2,)) if "w[" in spec else derivgrad.define(spec, x=(3,))
    assert "\n" not in str(e.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["//", "%", "/"]),
    st.one_of(
        st.integers(-5, 5).map(str), st.sampled_from(["2.5", "j", "x[0]", "-j", "2*j", "1e3"])
    ),
)
def test_the_parser_refuses_every_bad_divisor_in_one_line(op, divisor):
    spec = f"y[i, j] += (x[(i + j) {op} {divisor}] ?? 0)"
    try:
        derivgrad.define(spec, x=(4,), ranges={"i": 3, "j": 2})
    except DefineError as e:
        assert "\n" not in str(e) and "statement 1" in str(e)
        return
    assert divisor.lstrip("-").isdigit() and int(divisor) > 0


def test_op_check_holds_a_users_upsampling_backward():
    op = derivgrad.define(UPSAMPLE, x=(1, 2, 2, 3))

    def blocks(dy, x):  # each entry's 2x2 block of the upstream, summed
        n, c, h, w = x.shape
        return {"x": dy.reshape(n, c, h, 2, w, 2).sum(axis=(3, 5))}

    def corners(dy, x):  # a wrong one: the block's first entry only
        return {"x": dy[:, :, ::2, ::2].copy()}

    assert op.check(blocks, examples=3).passed
    res = op.check(corners, examples=3, raise_on_failure=False)
    assert not res.passed and "--define 'y[n, c, i, j] = x[n, c, i // 2, j // 2]'" in res.command


def test_a_tie_goes_to_the_first_in_the_order_the_indices_are_written():
    # x[u % 2 + 2*v] reads u before v: row-major (u, v) meets the tie at x[2] (u=0, v=1)
    # first, where (v, u), the order an Affine keeps, would meet x[1] (u=1, v=0) first
    spec = "y[] max= x[u % 2 + 2*v]"
    op = derivgrad.define(spec, x=(4,), ranges={"u": 2})
    x = np.array([0.0, 5.0, 5.0, 0.0])
    assert op.forward(x=x) == 5.0
    np.testing.assert_array_equal(op.backward(np.float64(1.0), x=x)["x"], [0, 0, 1, 0])
    assert ref.Statement(spec).summed == ["u", "v"]  # the reference's order, read apart
