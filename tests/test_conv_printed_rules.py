"""Every rule a convolution document prints is true at that instance: the compact rules are
expression trees (``derivgrad.ops.conv_rule``), the document prints them, and here each
printed tree is evaluated on random numbers and compared with the kernels, over a grid of
strides, paddings and dilations that includes the stride not dividing the padded size (the
rows past the last window).  The false ``∂L/∂w = x ⋆ δ`` printed at every stride before this
test existed fails it at any stride above 1."""

import itertools

import numpy as np
import pytest
from tolerances import assert_close

from derivgrad import derive
from derivgrad import kernels as K
from derivgrad.documents.render import build
from derivgrad.kernels import output_size
from derivgrad.ops.conv_rule import Geometry, rules


def _cases():
    # 2-D: a square grid where 2 and 3 do not divide the padded size less the span (rows
    # past the last window), then axes that differ
    for n, k, s, p, d in itertools.product((5,), (2, 3), (1, 2, 3), (0, 1), (1, 2)):
        if output_size(n, k, s, p, d) >= 1:
            yield "conv2d", (n, n), (k, k), (s, s), (p, p), (d, d)
    yield "conv2d", (4, 4), (2, 2), (3, 3), (1, 1), (1, 1)
    yield "conv2d", (5, 6), (2, 3), (2, 1), (1, 0), (1, 2)
    yield "conv2d", (6, 5), (3, 2), (3, 2), (0, 2), (2, 1)
    for n, k, s, p, d in itertools.product((7,), (2, 3), (1, 2, 3), (0, 2), (1, 3)):
        if output_size(n, k, s, p, d) >= 1:
            yield "conv1d", (n,), (k,), (s,), (p,), (d,)


def _eq_rows(doc):
    return {(lhs, "".join(frags)) for kind, x in doc.blocks if kind == "eq" for lhs, frags in x}


def _kernels(op, x, w, dy, s, p, d):
    if op == "conv2d":
        dx, dw, _ = K.conv2d_backward(dy, x, w, s, p, d, bias=False)
    else:
        dx, dw, _ = K.conv1d_backward(dy, x, w, s[0], p[0], d[0], bias=False)
    return dx[0, 0], dw[0, 0]


@pytest.mark.parametrize("case", list(_cases()), ids=str)
def test_printed_rules_match_kernels(case):
    op, size, ks, s, p, d = case
    params = dict(stride=s, padding=p, dilation=d, bias=False)
    if op == "conv2d":
        params.update(input=size, kernel=ks)
    else:
        params.update(input=size[0], kernel=ks[0], stride=s[0], padding=p[0], dilation=d[0])
    der = derive(op, **params)
    der.verify()  # the closed form evaluates the same trees: proved at this instance
    printed = _eq_rows(build(der))
    R = rules(Geometry(size, ks, s, p, d))
    rng = np.random.default_rng(sum(size) * 31 + sum(ks) * 7 + sum(s) + sum(p) * 3 + sum(d))
    x = rng.standard_normal((1, 1) + size)
    w = rng.standard_normal((1, 1) + ks)
    out = tuple(output_size(*a) for a in zip(size, ks, s, p, d))
    dy = rng.standard_normal((1, 1) + out)
    dx, dw = _kernels(op, x, w, dy, s, p, d)
    env = dict(x=x[0, 0], w=w[0, 0], delta=dy[0, 0])
    for key, want in (("x", dx), ("w", dw)):
        rule = R[key]
        assert (rule.lhs, rule.expr.tex()) in printed, f"{key} rule not printed as evaluated"
        got = rule.expr.evaluate(env).astype(np.float64)
        assert got.shape == want.shape, (key, got.shape, want.shape)
        assert_close(got, want, np.float64, f"{op} {key} rule")


def test_remainder_rows_are_said():
    """5×5 input, 2×2 kernel, stride 2: the last row and column lie past every window; the
    document says so and its dX has them at 0."""
    der = derive("conv2d", input=(5, 5), kernel=(2, 2), stride=2, bias=False)
    text = " ".join(x for kind, x in build(der).blocks if kind == "p")
    assert "the last one lies past every window" in text
    assert "4 of the 5 rows and columns" in text
    dx = der.grad_array("x")
    assert all(e == 0 for e in dx[4, :]) and all(e == 0 for e in dx[:, 4])
