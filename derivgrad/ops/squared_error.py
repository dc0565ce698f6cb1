r"""The squared-error loss of seed 004, ``L = Σ_{i,j} (y_{i,j} − o_{i,j})²`` between the
network's outputs ``o`` and the targets ``y``, and the notes' example built on it: a 3×3
input convolved with a 2×2 filter, a ReLU, then this loss, with both gradients taken by the
two paths the notes draw.

.. math:: \frac{\partial L}{\partial o_{i,j}} = 2\,(o_{i,j} - y_{i,j}), \qquad
          \frac{\partial L}{\partial y_{i,j}} = 2\,(y_{i,j} - o_{i,j})

The kernel face runs Numba kernels written here: the loss as one sequential sum (no race
between threads), the gradient elementwise in parallel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
import sympy as sp
from hypothesis import strategies as st

from ..documents.document import Block, Doc, bmatrix, indexed, tex_split
from ..symbolic.derivation import Derivation, Rule
from ..symbolic.functions import Relu, Step
from ..symbolic.params import check_unknown, pair
from ..symbolic.tensors import correlate, flip, pad, symbols
from .base import Op, Param, Problem, symbolic_work


# -- the symbolic face --------------------------------------------------------------------------
def squared_error(**params: Any) -> Derivation:
    op = "squared_error"
    check_unknown(op, params, ("input",))
    H, W = pair(op, "input", params.get("input", (2, 2)), 1)
    o = symbols("o", (H, W))
    y = symbols("y", (H, W))
    L = sp.Add(*[(y[i] - o[i]) ** 2 for i in np.ndindex(H, W)])
    rules = {
        "o": Rule(
            "∂L/∂o = 2 (o − y)",
            lambda: np.vectorize(lambda a, b: 2 * (a - b), otypes=[object])(o, y),
        ),
        "y": Rule(
            "∂L/∂y = 2 (y − o)",
            lambda: np.vectorize(lambda a, b: 2 * (b - a), otypes=[object])(o, y),
        ),
    }
    return Derivation(
        op=op,
        params=dict(input=(H, W)),
        inputs={"o": o, "y": y},
        output=np.array([L], dtype=object),
        upstream=np.array([sp.Integer(1)], dtype=object),
        rules=rules,
    )


# -- the kernel face ---------------------------------------------------------------------------
@numba.njit(cache=True)
def _loss_kernel(o: np.ndarray, y: np.ndarray) -> float:  # pragma: no cover (compiled)
    total = 0.0
    for i in range(o.size):  # one sequential sum: no two threads add into one total
        r = y[i] - o[i]
        total += r * r
    return total


@numba.njit(parallel=True, cache=True)
def _grad_kernel(
    o: np.ndarray, y: np.ndarray, scale: float, out: np.ndarray
) -> None:  # pragma: no cover (compiled)
    for i in numba.prange(o.size):
        out[i] = 2.0 * scale * (o[i] - y[i])


def _float_pair(o: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    o, y = np.asarray(o), np.asarray(y)
    for name, a in (("o", o), ("y", y)):
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"squared_error: {name} must be float32 or float64, got {a.dtype}")
    if o.shape != y.shape:
        raise ValueError(f"squared_error: o has shape {o.shape} but y has shape {y.shape}")
    if o.dtype != y.dtype:
        raise TypeError(f"squared_error: o is {o.dtype} but y is {y.dtype}; use one dtype")
    return np.ascontiguousarray(o), np.ascontiguousarray(y)


def squared_error_forward(o: np.ndarray, y: np.ndarray) -> float:
    """``L = Σ (y − o)²`` over every entry of ``o`` and ``y`` (one shape, one float dtype)."""
    o, y = _float_pair(o, y)
    return float(_loss_kernel(o.reshape(-1), y.reshape(-1)))


def squared_error_backward(o: np.ndarray, y: np.ndarray, dl: float = 1.0) -> np.ndarray:
    """``∂L/∂o = 2 (o − y)``, times the upstream ``dl`` (``∂L/∂y`` is its negative)."""
    o, y = _float_pair(o, y)
    out = np.empty_like(o)
    _grad_kernel(o.reshape(-1), y.reshape(-1), float(dl), out.reshape(-1))
    return out


# -- seed 004: conv -> ReLU -> squared error -----------------------------------------------------
def conv_relu_loss() -> Derivation:
    """The notes' example: ``O = X ⋆ W`` (3×3 input, 2×2 filter, stride 1, no padding),
    ``A = relu(O)``, ``L = Σ (y − A)²``.  The closed forms are the notes' two paths from
    ``∂L/∂O = 2 (A − y) ⊙ 1[O > 0]``: ``∂L/∂W = X ⋆ ∂L/∂O`` and ``∂L/∂X =
    pad(∂L/∂O, 1) ⋆ rot180(W)``; the chain rule differentiates ``L`` itself."""
    x, w, t = symbols("x", (3, 3)), symbols("w", (2, 2)), symbols("y", (2, 2))
    O = correlate(x[None], w[None, None], (1, 1), (1, 1))[0]
    A = np.array([[Relu(O[i, j]) for j in range(2)] for i in range(2)], dtype=object)
    L = sp.Add(*[(t[i] - A[i]) ** 2 for i in np.ndindex(2, 2)])
    dO = np.array(
        [[2 * (A[i, j] - t[i, j]) * Step(O[i, j]) for j in range(2)] for i in range(2)],
        dtype=object,
    )
    rules = {
        "w": Rule(
            "∂L/∂W = X ⋆ ∂L/∂O", lambda: correlate(x[None], dO[None, None], (1, 1), (1, 1))[0]
        ),
        "x": Rule(
            "∂L/∂X = pad(∂L/∂O, 1) ⋆ rot180(W)",
            lambda: correlate(
                pad(dO, [(1, 1), (1, 1)])[None], flip(w, (0, 1))[None, None], (1, 1), (1, 1)
            )[0],
        ),
    }
    return Derivation(
        op="squared_error",
        params=dict(input=(3, 3), kernel=(2, 2)),
        inputs={"x": x, "w": w},
        output=np.array([L], dtype=object),
        upstream=np.array([sp.Integer(1)], dtype=object),
        rules=rules,
        extra=dict(O=O, A=A, dO=dO, targets=t),
    )


def _seed004_doc() -> Doc:
    d = conv_relu_loss()
    d.verify()
    x, w = d.input_arrays["x"], d.input_arrays["w"]
    O = d.extra["O"]
    doc = Doc()
    doc.h("Convolution, ReLU and a squared error (lecture notes, file 004)")
    doc.p(
        r"Problem. A $3 \times 3$ input $X$ is convolved (cross-correlated) with a $2 \times 2$ "
        r"filter $W$, stride 1, no padding, giving $O$; then $A = \operatorname{relu}(O)$ and "
        r"the loss against the targets $y$ is $L = \sum_{i,j} (y_{i,j} - A_{i,j})^2$. Find "
        r"$\partial L / \partial W$ (path 1) and $\partial L / \partial X$ (path 2)."
    )
    doc.h("Forward pass", 2)
    doc.eq([(indexed("O", i), tex_split(O[i])) for i in np.ndindex(2, 2)])
    doc.h("The upstream gradient", 2)
    doc.p(
        r"$\partial L / \partial A_{i,j} = 2 (A_{i,j} - y_{i,j})$, and the ReLU passes it where "
        r"$O_{i,j} > 0$ (0 at the kink):"
    )
    doc.eq(
        [
            (
                r"\frac{\partial L}{\partial O_{%d,%d}}" % (i + 1, j + 1),
                [r"2 (A_{%d,%d} - y_{%d,%d})\, \mathbf{1}[O_{%d,%d} > 0]" % ((i + 1, j + 1) * 3)],
            )
            for i, j in np.ndindex(2, 2)
        ]
    )
    doc.p(r"Write $D = \partial L / \partial O$ for this $2 \times 2$ matrix.")
    Ds = symbols("D", (2, 2))
    dW = correlate(x[None], Ds[None, None], (1, 1), (1, 1))[0]
    padded = pad(Ds, [(1, 1), (1, 1)])
    rot = flip(w, (0, 1))
    dX = correlate(padded[None], rot[None, None], (1, 1), (1, 1))[0]
    doc.h("Path 1: the filter", 2)
    doc.p(
        r"Each $w_{k,l}$ touches every output, so $\partial L / \partial w_{k,l} = \sum_{i,j} "
        r"D_{i,j}\, \partial O_{i,j} / \partial w_{k,l} = \sum_{i,j} D_{i,j}\, x_{i+k-1,j+l-1}$: "
        r"the input correlated with $D$, $\partial L / \partial W = X \star D$:"
    )
    doc.eq(
        [
            (r"\frac{\partial L}{\partial w_{%d,%d}}" % (k + 1, m + 1), tex_split(dW[k, m]))
            for k, m in np.ndindex(2, 2)
        ]
    )
    doc.h("Path 2: the input", 2)
    doc.p(
        r"Each $x_{a,b}$ touches the outputs whose window covers it: $\partial L / \partial "
        r"x_{a,b} = \sum_{i,j} D_{i,j}\, \partial O_{i,j} / \partial x_{a,b}$, which is $D$ "
        r"zero-padded by $f - 1 = 1$ and correlated with the filter rotated by 180°:"
    )
    doc.eq(
        [
            (r"\operatorname{pad}(D, 1)", [bmatrix(padded)]),
            (r"\operatorname{rot180}(W)", [bmatrix(rot)]),
        ]
    )
    doc.eq(
        [
            (r"\frac{\partial L}{\partial x_{%d,%d}}" % (a + 1, b + 1), tex_split(dX[a, b]))
            for a, b in np.ndindex(3, 3)
        ]
    )
    doc.h("Proof", 2)
    doc.p(
        r"With $D$ written out as above, both paths equal the derivative of $L$ itself, entry by "
        r"entry: derivgrad proved it symbolically by expanding the difference to zero"
        + ("." if d.verified else " (not verified).")
    )
    return doc


# -- the op ------------------------------------------------------------------------------------
class SquaredError(Op):
    name = "squared_error"
    us_per_step = 20.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Squared-error loss"
    problems = "7b"
    params = (Param("input", "size", "size of the outputs and targets, an int or HxW"),)

    def build(self, **params: Any) -> Derivation:
        return squared_error(**params)

    def cost(self, **params: Any) -> int:
        H, W = pair(self.name, "input", params.get("input", (2, 2)), 1)
        return symbolic_work(1, 2 * H * W, 2 * H * W, 2 * H * W)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        o, y = values["o"], values["y"]
        do = squared_error_backward(o, y, float(upstream.reshape(-1)[0]))
        return np.array([squared_error_forward(o, y)]), {"o": do, "y": -do}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(dict(input=st.tuples(st.integers(1, 3), st.integers(1, 3))))

    def sections(self, d: Derivation) -> list[Block]:
        return [
            ("h", (2, "Where it is used")),
            (
                "p",
                r"Seed 004 puts this loss after a convolution and a ReLU: its gradient "
                r"$2(o - y)$ is the upstream gradient $\delta$ the layers below receive "
                r"(worked problem 7b).",
            ),
        ]

    def worked_problems(self) -> list[Problem]:
        return [Problem("7b", "Convolution, ReLU and a squared error", make=_seed004_doc)]


OPS = (SquaredError(),)
