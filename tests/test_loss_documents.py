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


def test_problem_sentence_says_the_label_and_no_size_twice():
    # the label is an index a reader needs (label = 1 was dropped as "a count of 1"); classes
    # = 3 beside z ∈ ℝ³ says the size twice
    for label in (1, 3):
        d = derivgrad.derive("softmax_cross_entropy", classes=3, label=label)
        doc = build(d)
        problem = next(x for k, x in doc.blocks if k == "p" and x.startswith("Problem."))
        assert f"label = {label}" in problem and "classes" not in problem
        forward = next(rhs for lhs, rhs in _rows(doc) if lhs == "L")
        assert f"- z_{{{label}}}" in forward  # L = −z_label + lse(z): the label the text says
    d = derivgrad.derive("conv2d", input=(3, 3), kernel=(2, 2))
    problem = next(x for k, x in build(d).blocks if k == "p" and x.startswith("Problem."))
    assert "stride = 1, padding = 0, dilation = 1" in problem and "input =" not in problem
    # a stride is no size: 2×2 beside w ∈ ℝ^{2×2} is still said
    d = derivgrad.derive("conv2d", input=(4, 4), kernel=(2, 2), stride=2, padding=1)
    problem = next(x for k, x in build(d).blocks if k == "p" and x.startswith("Problem."))
    assert "stride = 2, padding = 1" in problem and "kernel =" not in problem
