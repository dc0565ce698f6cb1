"""A loss's worked solution with numbers: the probabilities its formulas name are printed (and
are the kernels' probabilities), its gradient is said once, and no equation is trivial."""

from __future__ import annotations

import numpy as np
from latex_parse import parse

import derivgrad
from derivgrad import kernels as K
from derivgrad.documents.instance import attach
from derivgrad.documents.render import build


def _rows(doc):
    return [(lhs, " ".join(frags)) for k, x in doc.blocks if k == "eq" for lhs, frags in x]


def test_softmax_cross_entropy_prints_its_probabilities_and_no_trivial_equation():
    z = np.array([0.5, -1.25, 2.0, 0.0])
    d = attach(derivgrad.derive("softmax_cross_entropy", classes=4, label=2), {"z": z})
    d.verify()
    doc = build(d)
    rows = _rows(doc)
    printed = [parse(rhs) for lhs, rhs in rows if lhs == "p"]
    assert len(printed) == 1
    _, p = K.softmax_cross_entropy_forward(z[None], np.array([1]))
    np.testing.assert_allclose(np.array(printed[0], dtype=float).reshape(-1), p[0], rtol=1e-5)
    for lhs, rhs in rows:  # "(a) = a" says nothing
        sides = [s.strip() for s in rhs.split("=")]
        assert not (len(sides) == 2 and sides[0] == f"({sides[1]})"), (lhs, rhs)
    # the gradient ∂L/∂z is printed once symbolically, once with numbers
    symbolic = [rhs for lhs, rhs in rows if lhs.startswith(r"\frac{\partial L}{\partial z_{")]
    assert len(symbolic) == 4
    dz = K.softmax_cross_entropy_backward(p, np.array([1]))[0]
    numeric = [parse(rhs) for lhs, rhs in rows if lhs == r"\frac{\partial L}{\partial z}"]
    assert len(numeric) == 1
    np.testing.assert_allclose(np.array(numeric[0], dtype=float).reshape(-1), dz, rtol=1e-5)


def test_a_loss_names_its_own_inputs():
    d = derivgrad.derive("logistic_regression", classes=3, features=2)
    text = " ".join(x for k, x in build(d).blocks if k == "p")
    for name in ("W_{i,j}", "b_{i}", "x_{i}"):
        assert f"\\partial {name}$" in text
