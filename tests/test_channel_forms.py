"""Worked problem 8 (channels, filters, batch): every form the document prints, in the notes'
names (c the input channel, c' the output channel), evaluated on numbers and held to the
compiled kernels."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from derivgrad import kernels as K
from derivgrad.documents.render import to_markdown
from derivgrad.ops.conv import _index_doc, notes_index_rules
from derivgrad.ops.conv_rule import channel_rules, evaluate_channel_rules
from derivgrad.symbolic import index_rules as R


@st.composite
def instances(draw):
    n, c, o = (draw(st.integers(1, 3)) for _ in range(3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(kh, kh + 3)), draw(st.integers(kw, kw + 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, c, h, w))
    f = rng.standard_normal((o, c, kh, kw))
    delta = rng.standard_normal((n, o, h - kh + 1, w - kw + 1))
    return x, f, delta


@settings(max_examples=25, deadline=None)
@given(instances())
def test_vector_forms_equal_the_kernels(inst):
    x, w, delta = inst
    forms = evaluate_channel_rules(x, w, delta)
    dx, dw, _ = K.conv2d_backward(delta, x, w, bias=False)
    np.testing.assert_allclose(forms["y"].astype(float), K.conv2d_forward(x, w), atol=1e-12)
    np.testing.assert_allclose(forms["x"].astype(float), dx, atol=1e-12)
    np.testing.assert_allclose(forms["w"].astype(float), dw, atol=1e-12)
    # the transposed kernel: channels swapped, each filter turned by 180°
    for c, o in np.ndindex(w.shape[1], w.shape[0]):
        np.testing.assert_array_equal(forms["wT"][c, o].astype(float), w[o, c, ::-1, ::-1])


def test_index_rules_in_the_notes_names_equal_the_kernels():
    # the printed 1-based rules, c' the output channel: entry by entry against the kernels
    _, dx_rule, dw_rule = notes_index_rules()
    rng = np.random.default_rng(3)
    N, C, O, H, W, KH, KW = 2, 2, 3, 3, 3, 2, 2
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((O, C, KH, KW))
    delta = rng.standard_normal((N, O, H - KH + 1, W - KW + 1))
    dx, dw, _ = K.conv2d_backward(delta, x, w, bias=False)
    sizes = {R.C: C, sp.Symbol("C'", integer=True): O, R.KH: KH, R.KW: KW}
    sizes.update(
        {R.HO: H - KH + 1, R.WO: W - KW + 1, sp.Symbol("N", integer=True, positive=True): N}
    )
    pad1 = lambda a: np.pad(a, [(1, 0)] * a.ndim)  # noqa: E731  (index 0 unused: 1-based)
    arrays = {"\\delta": pad1(delta), "w": pad1(w), "x": pad1(x)}
    for n, c, a, b in [(0, 0, 0, 0), (1, 1, 2, 2), (0, 1, 1, 2), (1, 0, 2, 1), (0, 0, 1, 1)]:
        got = R.evaluate(dx_rule, sizes, arrays, {R.n: n + 1, R.c: c + 1, R.a: a + 1, R.b: b + 1})
        assert got == pytest.approx(dx[n, c, a, b])
    for o, c, a, b in np.ndindex(O, C, KH, KW):
        got = R.evaluate(dw_rule, sizes, arrays, {R.cp: o + 1, R.c: c + 1, R.a: a + 1, R.b: b + 1})
        assert got == pytest.approx(dw[o, c, a, b])


def test_the_document_prints_the_checked_forms():
    text = to_markdown(_index_doc())
    for _, (total, tree) in channel_rules().items():
        assert tree.tex() in text
        assert total in text
    _, dx_rule, _ = notes_index_rules()
    (term, _), _ = dx_rule.function.args
    assert sp.latex(term) in text or "w}_{c',c,a - i + 1,b - j + 1}" in text
    assert "the three forms give exactly the output and gradients" in text
