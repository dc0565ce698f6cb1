"""Hypothesis strategies for derivgrad's ops: valid parameters small enough for SymPy, and
input values that keep piecewise ops away from their kinks.

    from derivgrad.checks.strategies import op_params, op_values
    @given(st.data())
    def test_my_kernel(data):
        params = data.draw(op_params("conv2d"))
        ...

Strategies draw the hyper-parameters first and then sizes that fit them, so every draw
is a valid op; batch, channels and filters are drawn independently so that they differ in
most cases (a reduction over the wrong axis passes when they are equal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from ..registry import get
from ..symbolic.derivation import Derivation


def op_params(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Parameters for ``derivgrad.derive(name, **params)``; every draw is a valid op."""
    return get(name).strategy()


@st.composite
def op_values(draw: st.DrawFn, derivation: Derivation) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Arrays for the derivation's inputs and upstream gradient, seeded by hypothesis.

    Input values come from the op's :meth:`~derivgrad.ops.base.Op.values` (standard normal,
    or kept away from kinks and ties where the op has them).  Returns ``(values, upstream)``.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = get(derivation.op).values(derivation, rng)
    upstream = rng.standard_normal(derivation.upstream.shape)
    return values, upstream
