"""``verify()`` of layers taking odd and even functions of a difference in either order:
``|x − u|`` differentiated as a closed form gives ``δ·sign(x − u)``, by the chain rule through
the same read ``−δ·sign(u − x)`` (SymPy keeps ``sign``'s negated argument as it comes; its
``Abs``, ``tanh``, ``sin``, ``erf`` and ``cos`` take the sign out themselves).  Each is proved;
a wrong adjoint is still refused."""

import dataclasses

import pytest
import sympy as sp

import derivgrad
from derivgrad.notation import codegen

SHAPES = dict(x=(3,), u=(3, 2))
PROGRAMS = [
    "i[j] += abs(x[w] - u[w, j])",
    "i[j] += abs(u[w, j] - x[w])",
    "i[j] += abs(x[w] - u[w, j])**3",
    "y[j] += exp(-abs(x[w] - u[w, j]))",
    "y[j] += sqrt(abs(x[w] - u[w, j]) + 1)",
    "y[j] += pow(abs(x[w] - u[w, j]) + 1, x[w])",
    "y[j] += abs(x[w] - u[w, j]) * abs(u[w, j] - x[w])",
    "y[j] += tanh(u[w, j] - x[w]) * sin(x[w] - u[w, j])",
    "y[j] += cos(u[w, j] - x[w]) * erf(x[w] - u[w, j])",
    "y[j] += sigmoid(x[w] - u[w, j]) + min(u[w, j] - x[w], 0)",
]


@pytest.mark.parametrize("text", PROGRAMS)
def test_odd_and_even_functions_of_a_negated_difference_are_proved(text):
    assert derivgrad.define(text, **SHAPES).derive().verify()


@pytest.mark.parametrize("text", PROGRAMS[:6])
def test_a_wrong_adjoint_is_still_refused(monkeypatch, text):
    """Planted: the adjoint of x off by a thousandth in every term."""
    real = codegen.adjoint_terms

    def wrong(prog, name, example, **kw):
        free, terms = real(prog, name, example, **kw)
        if name == "x":
            k = sp.Rational(1001, 1000)
            terms = [dataclasses.replace(t, factor=t.factor * k) for t in terms]
        return free, terms

    monkeypatch.setattr(codegen, "adjoint_terms", wrong)
    d = derivgrad.define(text, **SHAPES).build(**SHAPES)
    with pytest.raises(AssertionError, match="dx"):
        d.verify(["x"])
