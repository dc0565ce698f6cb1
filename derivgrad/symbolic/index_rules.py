r"""General-size convolution rules in index notation, derived by SymPy from the forward
definition (worked problem 8), not typed in.

Forward, with ``Indexed`` tensors and symbolic sizes:

.. math:: y_{n,o,i,j} = \sum_{c,h,l} w_{o,c,h,l}\; x_{n,c,\,s i + d h - p,\; s j + d l - p}

Differentiating ``L = Σ δ_{n,o,i,j} y_{n,o,i,j}`` with respect to ``x_{n,c',a,b}`` gives a sum
of KroneckerDeltas that SymPy resolves; for s = d = 1, p = 0 it is

.. math:: \frac{\partial L}{\partial x_{n,c',a,b}} = \sum_{o,i,j} \delta_{n,o,i,j}\,
          w_{o,c',a-i,b-j}\,[0 \le a-i < K_H]\,[0 \le b-j < K_W]

i.e. ``Σ_{o,h,l} δ_{n,o,a-h,b-l} w_{o,c',h,l}`` — the full correlation of δ with the
flipped filter.  (The notes write the same rule with the true-convolution index order.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy as sp

from .reader import as_expr

n, o, c, i, j, h, l, a, b, cp, op_ = sp.symbols("n o c i j h l a b c' o'", integer=True)
H, W, KH, KW, C, O, HO, WO = sp.symbols("H W K_H K_W C O H_out W_out", integer=True, positive=True)
x, w, delta = sp.IndexedBase("x"), sp.IndexedBase("w"), sp.IndexedBase(r"\delta")


def conv2d_rules(
    stride: int = 1, padding: int = 0, dilation: int = 1
) -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
    """``(forward, dL/dx, dL/dw, dL/db)`` as SymPy expressions in index notation, derived from
    the forward sum by ``diff`` and ``doit``.  Indices are 0-based here."""
    s, p, d = (as_expr(v) for v in (stride, padding, dilation))
    y = sp.Sum(
        w[o, c, h, l] * x[n, c, s * i + d * h - p, s * j + d * l - p],
        (c, 0, C - 1),
        (h, 0, KH - 1),
        (l, 0, KW - 1),
    )
    L = lambda g: sp.Sum(delta[n, o, i, j] * g, (o, 0, O - 1), (i, 0, HO - 1), (j, 0, WO - 1))
    dx = L(sp.diff(y, x[n, cp, a, b])).doit()
    dw = sp.Sum(
        L(sp.diff(y, w[op_, cp, a, b])), (n, 0, sp.Symbol("N", integer=True, positive=True) - 1)
    ).doit()
    db = sp.Sum(
        sp.Sum(delta[n, op_, i, j], (i, 0, HO - 1), (j, 0, WO - 1)),
        (n, 0, sp.Symbol("N", integer=True, positive=True) - 1),
    )
    return y, dx, dw, db


def evaluate(
    expr: sp.Expr,
    sizes: Mapping[Any, int],
    arrays: Mapping[Any, np.ndarray],
    index: Mapping[Any, int],
) -> float:
    """Evaluate an index-notation expression for concrete sizes, arrays and free indices
    (used by the tests to hold the derived rule to the closed forms)."""
    subs = {k: v for k, v in sizes.items()}
    e = expr.subs(subs).subs(index).doit()

    def value(t):
        # a non-integer index is a term whose KroneckerDelta has no integer solution: absent
        if not all(v.is_integer for v in t.indices):
            return 0.0
        base, idx = t.base, [int(v) for v in t.indices]
        arr = arrays[str(base.label)]
        if any(v < 0 or v >= s for v, s in zip(idx, arr.shape)):
            return 0.0
        return float(arr[tuple(idx)])

    vals = {t: value(t) for t in e.atoms(sp.Indexed)}
    return float(e.xreplace(vals))
