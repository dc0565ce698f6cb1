"""Bounded, one-line failures of ``derivgrad.define``: what no face could compute in bounded
time is refused before any work (a ``ParamError`` naming the statement and column), and a
numeric instance whose values leave float64's reals ends in one line naming the statement
and the entry (never a SymPy ``zoo``, a ZeroDivisionError, an OverflowError or minutes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import derivgrad
from derivgrad.cli import main
from derivgrad.errors import ParamError
from derivgrad.notation.parse import MAX_EXP_DEPTH, MAX_POWER, MAX_SUBSCRIPT


def _refused(spec: str, **shapes) -> str:
    with pytest.raises(ParamError) as info:
        derivgrad.define(spec, **shapes)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"statement 1 ({spec!r}), column "), msg
    return msg


@settings(max_examples=25, deadline=None)
@given(
    p=st.one_of(st.integers(MAX_POWER + 1, 10**12), st.integers(-(10**12), -MAX_POWER - 1)),
    split=st.booleans(),
)
def test_exponents_past_the_bound_are_refused(p, split):
    # nested powers multiply: (x**a)**b is refused when |a*b| passes the bound
    if split and abs(p) > 2 * MAX_POWER:
        a = MAX_POWER // 2
        spec = f"y[i] = (x[i] ** {a}) ** {p // a}"
    else:
        spec = f"y[i] = x[i] ** {p}"
    assert "exponent past" in _refused(spec, x=(2,))


def test_exponents_at_the_bound_are_accepted():
    op = derivgrad.define(f"y[i] = x[i] ** {MAX_POWER} + (x[i] ** 10) ** 100", x=(1,))
    assert op.derive().verify()


@pytest.mark.parametrize("depth", [MAX_EXP_DEPTH + 1, MAX_EXP_DEPTH + 3])
@pytest.mark.parametrize("outer", ["exp", "sigmoid", "2 **"])
def test_nested_exponentials_are_refused(depth, outer):
    e = "x[i]"
    for _ in range(depth - 1):
        e = f"exp({e})"
    e = f"2 ** ({e})" if outer == "2 **" else f"{outer}({e})"
    assert "nested more than" in _refused(f"y[i] = {e}", x=(2,))


@pytest.mark.parametrize(
    "spec",
    [
        f"y[i] = x[i + {MAX_SUBSCRIPT + 1}]",
        f"y[i] = x[i - {10**23}]",
        f"y[i] += x[{2**80} * i + u] * w[u]",
        f"y[i] += x[i + {MAX_SUBSCRIPT + 1} * u] * w[u]",
    ],
)
def test_huge_subscripts_are_refused(spec):
    assert "past the largest an array axis allows" in _refused(spec, x=(4,), w=(2,))


@pytest.mark.parametrize(
    "spec, what",
    [
        ("y[i] = x[i] / 0", "divides by zero"),
        ("y[i] = x[i] / (3 - 3)", "divides by zero"),
        ("y[i] = x[i] * 0 ** -1", "divides by zero"),
        ("y[i] = x[i] * 1e400", "not a finite real number"),
        ("y[i] = x[i] * 10**400", "not a finite real number"),
    ],
)
def test_constant_faults_are_refused(spec, what):
    assert what in _refused(spec, x=(3,))


@pytest.mark.parametrize(
    "spec, x, where",
    [
        ("y[i] = 1 / x[i]", [1.0, 0.0], "statement 1 ('y[i] = 1 / x[i]') gives y[2] (1-based)"),
        ("y[i] = log(x[i])", [-1.0, 1.0], "gives y[1] (1-based) = nan"),
        ("y[i] = sqrt(x[i])", [4.0, 0.0], "the gradient dL/dx[2] (1-based) = inf"),
        ("s[i] = x[i] * 2\ny[i] = exp(exp(s[i]))", [0.0, 10.0], "statement 2 ("),
    ],
)
def test_a_numeric_instance_names_the_statement_and_the_entry(spec, x, where):
    op = derivgrad.define(spec, x=(2,))
    with pytest.raises(ParamError) as info:  # the kernel face of a numeric instance
        op.kernel(op.derive(), {"x": np.array(x)}, np.ones(2))
    msg = str(info.value)
    assert "\n" not in msg and where in msg, msg
    # the kernels themselves compute as NumPy does (inf, nan), never raise
    with np.errstate(all="ignore"):
        y = op.forward(x=np.array(x))
        op.backward(np.ones_like(y), x=np.array(x))
    assert not np.isfinite(y).all() or "gradient" in msg


@pytest.mark.parametrize(
    "spec, value",
    [
        ("y[i] = x[i] ** 1000000000", "3"),
        ("y[i] = exp(exp(exp(exp(x[i]))))", "10"),
        ("y[i] = x[i] / 0", "3"),
        ("y[i] = sqrt(x[i])", "0"),
        ("y[i] = exp(exp(x[i]))", "10"),
    ],
)
def test_the_command_line_ends_in_one_line_and_exit_2(spec, value, capsys):
    argv = ["derive", "--define", spec, "--shape", "x=1", "--value", f"x=[{value}]"]
    rc = main([*argv, "--value", "upstream=[1]", "--format", "text"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("derivgrad derive: error: "), err
    assert "statement 1 (" in err, err


@pytest.mark.parametrize("power", [1, 2])
def test_an_extent_in_a_denominator_is_a_float_division(power):
    # found by the fuzzer: an extent (len) is an integer at run time, and the backward's
    # (n*n + 1)**(-2) was an integer power, 0 in Numba: a gradient of zeros, silently
    op = derivgrad.define(
        f"y[q] += x[q] / (len(q) * len(q) + 1) ** {power}", x=(3,), name=f"extent_{power}"
    )
    x = np.arange(3.0)
    g = op.backward(np.ones(3), x=x)["x"]
    h = 1e-6
    central = [
        (op.forward(x=x + h * e).sum() - op.forward(x=x - h * e).sum()) / (2 * h) for e in np.eye(3)
    ]
    np.testing.assert_allclose(g, central, rtol=1e-6)
    assert np.all(g > 0)


def test_a_derivation_too_large_is_refused_before_any_work(monkeypatch):
    # the size guard covers defined layers too: an MNIST-sized 8-channel convolution would
    # take about an hour symbolically, while its kernels run at any size
    import derivgrad.notation.derivation as derivation

    monkeypatch.setattr(derivation, "build", lambda *a: pytest.fail("build() was reached"))
    op = derivgrad.define(
        "y[n, o, i, j] += x[n, c, i + u, j + v] * w[o, c, u, v]",
        x=(1, 8, 64, 64),
        w=(8, 8, 5, 5),
        name="big_conv",
    )
    with pytest.raises(ParamError) as e:
        op.derive()
    msg = str(e.value)
    assert "big_conv: too large" in msg and "x=1x8x64x64" in msg and "\n" not in msg
    x = np.ones((1, 8, 12, 12))
    assert op.forward(x=x, w=np.ones((8, 8, 5, 5))).shape == (1, 8, 8, 8)
