"""The notation's later functions (issue 28, item 1): ``sin``, ``cos``, ``min(a, b)`` (ties to
the first argument, as ``max``), ``pow(a, b)`` with a real exponent (real where ``a > 0``),
and the warning for a ``+=`` term that reads no summed index.

One layer uses every function, so one set of kernels is compiled: its forward and backward are
held to NumPy formulas written here (the derivatives by hand, not by SymPy), at ties of
``min`` included, and its symbolic faces (derive, verify, documents, check) run on it.  The
differential fuzzer (``test_define_fuzz.py``) draws the same functions in random programs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy as sp

import derivgrad
from derivgrad.documents.render import render
from derivgrad.errors import ParamError
from derivgrad.formats import json as json_format
from derivgrad.notation.parse import parse_statement
from derivgrad.notation.program import SYMPY_FUNCTIONS

SPEC = "y[i] = min(x[i], w[i]) + sin(x[i]) * cos(w[i]) + pow(x[i] * x[i] + 1, w[i])"


@pytest.fixture(scope="module")
def op():
    return derivgrad.define(SPEC, name="t_functions", x=(3,), w=(3,))


def by_hand(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> tuple:
    """The layer and its gradients, derived on paper: d min(x, w)/dx = [x <= w] (the first
    argument wins a tie), d b**w/dx = w b**(w-1) 2x and d b**w/dw = b**w log b, b = x² + 1."""
    b = x * x + 1
    y = np.minimum(x, w) + np.sin(x) * np.cos(w) + b**w
    first = (x <= w).astype(float)
    gx = dy * (first + np.cos(x) * np.cos(w) + w * b ** (w - 1) * 2 * x)
    gw = dy * ((1 - first) - np.sin(x) * np.sin(w) + b**w * np.log(b))
    return y, gx, gw


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_kernels_agree_with_the_derivatives_written_by_hand(op, dtype, tol):
    rng = np.random.default_rng(7)
    x = rng.uniform(-2.0, 2.0, 64)
    w = rng.uniform(-2.0, 2.0, 64)
    w[::4] = x[::4]  # ties of min: the gradient goes to the first argument, x
    x, w = x.astype(dtype).astype(np.float64), w.astype(dtype).astype(np.float64)
    dy = rng.uniform(-1, 1, 64)
    y, gx, gw = by_hand(x, w, dy)
    c = {k: v.astype(dtype) for k, v in dict(x=x, w=w).items()}
    np.testing.assert_allclose(op.forward(**c), y, rtol=tol, atol=tol)
    g = op.backward(dy.astype(dtype), **c)
    np.testing.assert_allclose(g["x"], gx, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(g["w"], gw, rtol=tol * 10, atol=tol * 10)
    ties = np.flatnonzero(x == w)
    assert len(ties) >= 16 and np.all(g["x"][ties] != 0)


def test_derive_verify_and_documents(op):
    d = derivgrad.derive(op.name)
    assert d.verify()
    tex = render(d, "latex")
    for f in (r"\sin", r"\cos", r"\max"):  # min is written -max(-a, -b) in the documents
        assert f in tex
    # the symbolic forward at numbers agrees with the formulas above
    x, w = np.array([0.5, 1.5, 1.0]), np.array([1.5, 0.25, 1.0])
    y, _, _ = by_hand(x, w, np.ones(3))
    at = {f"{n}_{{{k + 1}}}": v[k] for n, v in (("x", x), ("w", w)) for k in range(3)}
    got = [
        float(e.xreplace({s: sp.Float(at[s.name]) for s in e.free_symbols}))
        for e in np.asarray(d.output_array, dtype=object).ravel()
    ]
    np.testing.assert_allclose(got, y, rtol=1e-12)


def test_check_holds_a_hand_written_backward_to_the_definition(op):
    def mine(dy, x, w):
        return dict(zip(("x", "w"), by_hand(np.asarray(x), np.asarray(w), np.asarray(dy))[1:]))

    assert op.check(mine, examples=2).passed

    def wrong(dy, x, w):  # min's gradient given to x everywhere
        gx, gw = mine(dy, x, w).values()
        return {"x": gx + dy * (np.asarray(x) > np.asarray(w)), "w": gw}

    res = op.check(wrong, examples=2, raise_on_failure=False)
    assert not res.passed and "gradient of x differs" in res.message


def test_pow_of_a_negative_base_and_a_real_exponent_ends_in_one_line():
    op = derivgrad.define("y[i] = pow(x[i], w[i]) + pow(x[i], 3)", x=(3,), w=(3,))
    x = np.array([-0.5, -1.0, 2.0])
    w = np.array([2.0, 1.0, 0.5])
    # whole exponents of a negative base are real, as NumPy's ...
    assert np.allclose(op.forward(x=x, w=w), x**w + x**3)
    # ... but not their gradient in the exponent (x**w log x): outside the domain, a > 0
    with pytest.raises(ParamError, match=r"^the gradient dL/dw\[1\] \(1-based\) = nan"):
        op.kernel(None, {"x": x, "w": w}, np.ones(3))
    with pytest.raises(ParamError) as info:
        op.kernel(None, {"x": x, "w": np.array([0.5, 1.0, 1.0])}, np.ones(3))
    message = str(info.value)
    assert "\n" not in message and "statement 1" in message and "y[1] (1-based) = nan" in message


@pytest.mark.parametrize(
    "line, terms",
    [
        ("y[n, o] += x[n, i] * W[o, i] + b[o]", ["b[o]"]),
        ("y[n, o] += x[n, i] * W[o, i] - 2 * b[o] + 1", ["2 * b[o]", "1"]),
        ("y[n] += -b[n] + len(i) + x[n, i]", ["b[n]", "len(i)"]),
        ("y[n, o] += (x[n, i] + b[o]) * W[o, i]", []),  # b is multiplied by a read of i
        ("y[n, o] += x[n, i] * W[o, i]", []),
        ("y[n] = x[n] + 1", []),  # elementwise: nothing is summed
        ("y[n] += x[n, i] + pow(b[n], 2)", ["pow(b[n], 2)"]),
    ],
)
def test_a_term_reading_no_summed_index_is_named(line, terms):
    assert parse_statement(1, line).constant_terms == terms


def test_the_warning_is_one_line_naming_the_term_and_the_statement(capfd):
    derivgrad.define("y[n, o] += x[n, j] * W[o, j] + bias[o]", x=(2, 3), W=(4, 3), bias=(4,))
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("derivgrad: warning: statement 1 ('y[n, o] += x[n, j] * W[o, j]")
    assert "the term 'bias[o]' reads none of the summed indices (j)" in err[0]


def test_the_function_names_and_their_arguments_are_checked():
    for line, words in [
        ("y[i] = min(x[i])", "min() takes 2 arguments, got 1"),
        ("y[i] = pow(x[i])", "pow() takes 2 arguments, got 1"),
        ("y[i] = sin(x[i], x[i])", "sin() takes 1 argument, got 2"),
        ("y[i] = pow(x[i], 5000)", "an exponent past 1000"),
        ("y[i] = pow(x[i], pow(x[i], exp(x[i])))", "nested more than 2 deep"),
    ]:
        with pytest.raises(derivgrad.notation.DefineError, match=re.escape(words)):
            parse_statement(1, line)


# -- scalar outputs ------------------------------------------------------------------------------
LOSS = "h[n, o] += x[n, k] * w[o, k]\nL[] += (h[n, o] - t[n, o]) ** 2 / len(n)"


def test_a_scalar_loss_agrees_with_numpy_and_its_gradients_written_by_hand():
    op = derivgrad.define(LOSS, x=(3, 4), w=(2, 4), t=(3, 2))
    rng = np.random.default_rng(3)
    x, w, t = rng.standard_normal((5, 4)), rng.standard_normal((2, 4)), rng.standard_normal((5, 2))
    r = x @ w.T - t
    y = op.forward(x=x, w=w, t=t)
    assert y.shape == () and np.isclose(y, np.sum(r**2) / 5, rtol=1e-13)
    g = op.backward(np.array(0.5), x=x, w=w, t=t)
    dh = 0.5 * 2 * r / 5
    np.testing.assert_allclose(g["x"], dh @ w, rtol=1e-12)
    np.testing.assert_allclose(g["w"], dh.T @ x, rtol=1e-12)
    np.testing.assert_allclose(g["t"], -dh, rtol=1e-12)
    with pytest.raises(ParamError, match=r"dy must have the output's shape \(\), got \(1,\)"):
        op.backward(np.ones(1), x=x, w=w, t=t)
    d = derivgrad.derive(op.name)
    assert d.verify()
    assert "None" not in render(d, "latex")  # the scalar's inner index is never printed

    def mine(dy, x, w, t):  # the check hands a user's backward a 0-d dy, as op.backward takes
        assert np.shape(dy) == ()
        dh = dy * 2 * (x @ w.T - t) / len(x)
        return {"x": dh @ w, "w": dh.T @ x, "t": -dh}

    assert op.check(mine, examples=2).passed


@pytest.mark.parametrize(
    "line, words",
    [
        ("L[] = x[i]", "column 9: index 'i' is on the right but not on the left"),
        ("L[] += x[i] + y[]", "column 16: empty brackets are a scalar output"),
        ("L[] += x[i] +* 2", "column 14: syntax error"),
        ("L[] += x[q] * len(k)", "column 15: len(k): index 'k' is not read"),
    ],
)
def test_a_scalar_statement_reports_columns_of_the_text_as_written(line, words):
    with pytest.raises(derivgrad.notation.DefineError, match=re.escape(words)):
        parse_statement(1, line)


@pytest.mark.parametrize("fname", sorted(SYMPY_FUNCTIONS))
def test_every_notation_function_reads_back_from_json(fname):
    # whatever the notation can write, a JSON derivation of it must read back: the reader's
    # allow-list (symbolic/reader.py) and the notation's functions are two lists kept apart
    arg = "x[i] * x[i] + 1" if fname in ("log", "sqrt") else "x[i]"
    call = f"{fname}({arg}, 0)" if fname in ("max", "min") else f"{fname}({arg})"
    d = derivgrad.define(f"y[i] = {call}", x=(2,), name=f"json_{fname}").derive()
    back = json_format.read(json_format.dumps(d))
    assert set(back["gradients"]) == {"x"}
