r"""The logistic sigmoid, elementwise — every face of an op in one module, as an example of
the op protocol (:mod:`derivgrad.ops.base`): nothing else in derivgrad names it.

.. math:: y_i = \sigma(z_i) = \frac{1}{1 + e^{-z_i}}, \qquad
          \frac{\partial y_i}{\partial z_j} = [i = j]\, \sigma(z_i)\,(1 - \sigma(z_i))

so the Jacobian is diagonal and the closed form is ``dz = δ ⊙ y ⊙ (1 − y)``.  ``verify()``
writes each ``e^{z}`` as a positive symbol and cancels the difference, a rational function.

The kernel face runs a Numba kernel written here: the numerically stable form
``e^{z} / (1 + e^{z})`` for ``z < 0`` (``e^{-z}`` would overflow), ``1 / (1 + e^{-z})`` else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
import sympy as sp
from hypothesis import strategies as st

from ..documents.document import Block
from ..symbolic.derivation import Derivation, Rule
from ..symbolic.params import check_unknown, count
from ..symbolic.proofs import Rational
from ..symbolic.tensors import symbols
from .base import Op, Param, symbolic_work


# -- the symbolic face --------------------------------------------------------------------------
def sigmoid(**params: Any) -> Derivation:
    op = "sigmoid"
    check_unknown(op, params, ("features",))
    n = count(op, "features", params.get("features", 3))
    z = symbols("z", (n,))
    d = symbols("d", (n,), latex=r"\delta")
    y = np.array([1 / (1 + sp.exp(-v)) for v in z], dtype=object)
    rules = {
        "z": Rule(
            "dz = δ ⊙ y ⊙ (1 − y)",
            lambda: np.array([d[i] * y[i] * (1 - y[i]) for i in range(n)], dtype=object),
        )
    }
    return Derivation(
        op=op,
        params=dict(features=n),
        inputs={"z": z},
        output=y,
        upstream=d,
        rules=rules,
        proof=Rational(),
    )


# -- the kernel face: a validating wrapper over a parallel Numba kernel ------------------------
@numba.njit(parallel=True, cache=True)
def _sigmoid_kernel(z: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover (compiled)
    for i in numba.prange(z.size):
        v = z[i]
        if v < 0:
            e = np.exp(v)
            out[i] = e / (1 + e)
        else:
            out[i] = 1 / (1 + np.exp(-v))


@numba.njit(parallel=True, cache=True)
def _sigmoid_backward_kernel(
    dy: np.ndarray, y: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover (compiled)
    for i in numba.prange(y.size):
        out[i] = dy[i] * y[i] * (1 - y[i])


def _float_array(name: str, a: Any) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"sigmoid: {name} must be float32 or float64, got {a.dtype}")
    return np.ascontiguousarray(a)


def sigmoid_forward(z: np.ndarray) -> np.ndarray:
    """``y = σ(z)`` elementwise; any shape, float32 or float64 (the output keeps the dtype).
    NaN propagates."""
    z = _float_array("z", z)
    out = np.empty_like(z)
    _sigmoid_kernel(z.reshape(-1), out.reshape(-1))
    return out


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dz = dy ⊙ y ⊙ (1 − y)`` from the forward's output ``y`` (the residual the backward
    needs), both of one shape and one dtype."""
    dy, y = _float_array("dy", dy), _float_array("y", y)
    if dy.shape != y.shape:
        raise ValueError(f"sigmoid: dy has shape {dy.shape} but y has shape {y.shape}")
    if dy.dtype != y.dtype:
        raise TypeError(f"sigmoid: dy is {dy.dtype} but y is {y.dtype}; use one dtype")
    out = np.empty_like(y)
    _sigmoid_backward_kernel(dy.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


# -- the op ------------------------------------------------------------------------------------
class Sigmoid(Op):
    name = "sigmoid"
    us_per_step = 13000.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Sigmoid"
    params = (Param("features", "int", "input features"),)

    def build(self, **params: Any) -> Derivation:
        return sigmoid(**params)

    def cost(self, **params: Any) -> int:
        n = count(self.name, "features", params.get("features", 3))
        return symbolic_work(n, 1, 1, n)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        y = sigmoid_forward(values["z"])
        return y, {"z": sigmoid_backward(upstream, y)}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(dict(features=st.integers(1, 5)))

    def sections(self, d: Derivation) -> list[Block]:
        return [
            ("h", (2, "The derivative in terms of the output")),
            (
                "p",
                r"Since $\sigma'(z) = \frac{e^{-z}}{(1 + e^{-z})^2} = \sigma(z)\,(1 - \sigma(z))$, "
                r"the backward pass needs only the forward's output $y$: "
                r"$\partial L / \partial z_i = \delta_i\, y_i (1 - y_i)$.",
            ),
        ]


OPS = (Sigmoid(),)
