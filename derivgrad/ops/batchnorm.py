r"""Symbolic batch normalisation for CNNs (worked problem 11).

Statistics are per channel over (N, H, W): the fully connected batch norm applied after
reshaping (N, C, H, W) to (N·H·W, C).  With ``M = N H W`` values per channel,

.. math::
    \mu = \tfrac1M \sum x,\quad \sigma^2 = \tfrac1M \sum (x-\mu)^2,\quad
    \hat x = \frac{x-\mu}{\sqrt{\sigma^2+\epsilon}},\quad y = \gamma \hat x + \beta

and the closed form ``dx = γ/√(σ²+ε) · (δ − mean(δ) − x̂ · mean(δ x̂))``,
``dγ = Σ δ x̂``, ``dβ = Σ δ``.  ``verify()`` replaces ``√(σ²+ε)`` by a positive symbol S
(the chain rule only ever differentiates it through σ², which stays explicit) and cancels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from derivgrad import kernels as K

from ..symbolic.derivation import Derivation
from ..symbolic.params import check_unknown, count, pair
from ..symbolic.tensors import symbols
from .base import Op, Param, Problem


def batchnorm2d(**params: Any) -> Derivation:
    op = "batchnorm2d"
    check_unknown(op, params, ("batch", "channels", "input", "eps"))
    eps_value = params.get("eps", 1e-5)
    if (
        isinstance(eps_value, bool)
        or not isinstance(eps_value, (int, float))
        or not 0 < eps_value < float("inf")
    ):
        from ..symbolic.params import ParamError

        raise ParamError(f"{op}: eps must be a positive number, got {eps_value!r}")
    N = count(op, "batch", params.get("batch", 2))
    C = count(op, "channels", params.get("channels", 1))
    H, W = pair(op, "input", params.get("input", (1, 2)), 1)
    M = N * H * W
    x = symbols("x", (N, C, H, W))
    gamma = symbols("gamma", (C,), latex=r"\gamma")
    beta = symbols("beta", (C,), latex=r"\beta")
    eps = sp.Symbol(r"\epsilon", positive=True)
    d = symbols("d", (N, C, H, W), latex=r"\delta")
    y = np.empty(x.shape, dtype=object)
    xhat = np.empty(x.shape, dtype=object)
    mu, var, B = [], [], []
    for c in range(C):
        xc = list(x[:, c].reshape(-1))
        m = sp.Add(*xc) / M
        v = sp.Add(*[(t - m) ** 2 for t in xc]) / M
        b = v + eps
        mu.append(m)
        var.append(v)
        B.append(b)
        for idx in np.ndindex(N, H, W):
            n, i, j = idx
            xhat[n, c, i, j] = (x[n, c, i, j] - m) * b ** sp.Rational(-1, 2)
            y[n, c, i, j] = gamma[c] * xhat[n, c, i, j] + beta[c]

    def dx():
        out = np.empty(x.shape, dtype=object)
        for c in range(C):
            dc, hc = d[:, c], xhat[:, c]
            mean_d = sp.Add(*dc.reshape(-1)) / M
            mean_dh = sp.Add(*[a * h for a, h in zip(dc.reshape(-1), hc.reshape(-1))]) / M
            for idx in np.ndindex(N, H, W):
                n, i, j = idx
                out[n, c, i, j] = (
                    gamma[c]
                    * B[c] ** sp.Rational(-1, 2)
                    * (d[n, c, i, j] - mean_d - xhat[n, c, i, j] * mean_dh)
                )
        return out

    closed = {
        "x": dx,
        "gamma": lambda: np.array(
            [
                sp.Add(*[a * h for a, h in zip(d[:, c].reshape(-1), xhat[:, c].reshape(-1))])
                for c in range(C)
            ],
            dtype=object,
        ),
        "beta": lambda: np.array([sp.Add(*d[:, c].reshape(-1)) for c in range(C)], dtype=object),
    }
    rules = {
        "x": "dx = γ/√(σ²+ε) (δ − mean(δ) − x̂ mean(δ x̂))",
        "gamma": "dγ = Σ δ x̂",
        "beta": "dβ = Σ δ",
    }
    der = Derivation(
        op,
        dict(batch=N, channels=C, input=(H, W)),
        {"x": x, "gamma": gamma, "beta": beta},
        y,
        d,
        closed,
        rules,
        proof="radical",
        extra=dict(mu=mu, var=var, eps=eps, radicands=B),
        constants={eps: sp.Float(eps_value)},
    )
    return der


# -- the op protocol ---------------------------------------------------------------------------
@st.composite
def _sizes(draw: Any) -> dict[str, Any]:
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if n * h * w < 2:  # one value per channel has no variance to normalise by
        n = 2
    return dict(batch=n, channels=c, input=(h, w))


class BatchNorm2d(Op):
    name = "batchnorm2d"
    title = "Batch normalisation for CNNs"
    problems = "11"
    params = (
        Param("batch", "int", "samples in the batch"),
        Param("channels", "int", "channels (statistics are per channel)"),
        Param("input", "size", "spatial size, an int or HxW"),
    )

    def build(self, **params: Any) -> Derivation:
        return batchnorm2d(**params)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        y, cache = K.batchnorm2d_forward(values["x"], values["gamma"], values["beta"], eps=1e-5)
        dx, dg, db = K.batchnorm2d_backward(upstream, cache)
        return y, {"x": dx, "gamma": dg, "beta": db}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return _sizes()

    def worked_problems(self) -> list[Problem]:
        return [Problem("11", params=dict(batch=2, channels=1, input=(1, 2)))]


OPS = (BatchNorm2d(),)
