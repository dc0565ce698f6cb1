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

from ..documents.document import Block, Doc, indexed, tex, tex_split
from ..symbolic.derivation import Derivation, Rule
from ..symbolic.params import check_unknown, count, pair
from ..symbolic.proofs import Radical
from ..symbolic.tensors import symbols
from .base import Op, Param, Problem, symbolic_work


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

    rules = {
        "x": Rule("dx = γ/√(σ²+ε) (δ − mean(δ) − x̂ mean(δ x̂))", dx),
        "gamma": Rule(
            "dγ = Σ δ x̂",
            lambda: np.array(
                [
                    sp.Add(*[a * h for a, h in zip(d[:, c].reshape(-1), xhat[:, c].reshape(-1))])
                    for c in range(C)
                ],
                dtype=object,
            ),
        ),
        "beta": Rule(
            "dβ = Σ δ",
            lambda: np.array([sp.Add(*d[:, c].reshape(-1)) for c in range(C)], dtype=object),
        ),
    }
    der = Derivation(
        op=op,
        params=dict(batch=N, channels=C, input=(H, W)),
        inputs={"x": x, "gamma": gamma, "beta": beta},
        output=y,
        upstream=d,
        rules=rules,
        proof=Radical(B, radicand=r"\sigma^2 + \epsilon", differentiated=r"\sigma^2"),
        extra=dict(mu=mu, var=var, eps=eps, radicands=B),
        constants={eps: sp.Float(eps_value)},
    )
    return der


# -- the document: the notes' named intermediates ----------------------------------------------
def _named(d: Derivation, c: int) -> dict[str, Any]:
    """Channel ``c`` in the notes' names: symbols ``x̂`` for the normalised inputs and ``S`` for
    ``√(σ²+ε)``, the Jacobian and the gradients written in them, and the substitution back
    to the inputs (``x̂ = (x − μ)/S``, ``S = √(σ²+ε)``) that proves them."""
    x = d.input_arrays["x"][:, c].reshape(-1)
    dl = d.upstream_array[:, c].reshape(-1)
    gamma = d.input_arrays["gamma"][c]
    M = len(x)
    k = c + 1
    xh = [
        sp.Symbol(r"\hat x_{%d,%d,%d,%d}" % (n + 1, k, i + 1, j + 1)) for n, i, j in _positions(d)
    ]
    S = sp.Symbol(r"S_{%d}" % k, positive=True)
    J = [
        [
            gamma / S * ((1 if i == o else 0) - sp.Rational(1, M) - xh[i] * xh[o] / M)
            for o in range(M)
        ]
        for i in range(M)
    ]
    mean_d = sp.Add(*dl) / M
    mean_dh = sp.Add(*[a * h for a, h in zip(dl, xh)]) / M
    dx = [gamma / S * (dl[i] - mean_d - xh[i] * mean_dh) for i in range(M)]
    dgamma = sp.Add(*[a * h for a, h in zip(dl, xh)])
    mu = d.extra["mu"][c]
    B = d.extra["radicands"][c]
    back = {S: sp.sqrt(B), **{h: (v - mu) / sp.sqrt(B) for h, v in zip(xh, x)}}
    return dict(x=x, dl=dl, xh=xh, S=S, J=J, dx=dx, dgamma=dgamma, back=back, M=M, k=k)


def _positions(d: Derivation) -> list[tuple[int, ...]]:
    N, _, H, W = d.input_arrays["x"].shape
    return list(np.ndindex(N, H, W))


def named_forms_hold(d: Derivation) -> bool:
    """Prove that the named Jacobian and closed forms of the document, with ``x̂`` and ``S``
    substituted back, equal the derivation's Jacobian and chain rule entry by entry."""
    C = d.input_arrays["gamma"].shape[0]
    Jx = d.jacobian_array("x")
    chain = d.chain_array("x")
    N, _, H, W = d.input_arrays["x"].shape
    for c in range(C):
        nm = _named(d, c)
        pos = [(n, c, i, j) for n, i, j in np.ndindex(N, H, W)]
        for a, p in enumerate(pos):
            if not d._is_zero(nm["dx"][a].xreplace(nm["back"]) - chain[p]):
                return False
            for o, q in enumerate(pos):
                if not d._is_zero(nm["J"][a][o].xreplace(nm["back"]) - Jx[p + q]):
                    return False
    return True


def _statistics_with_numbers(d: Derivation) -> list[Block]:
    """μ, σ², S and x̂ of each channel at the instance's numbers (none without values)."""
    if not getattr(d, "values", None) or "x" not in d.values:
        return []
    from ..documents.instance import substitutions

    subs = substitutions(d)
    rows = []
    for c in range(d.input_arrays["gamma"].shape[0]):
        nm = _named(d, c)
        k = nm["k"]
        mu = sp.nsimplify(d.extra["mu"][c].xreplace(subs))
        var = sp.nsimplify(d.extra["var"][c].xreplace(subs))
        S = sp.sqrt(var + d.constants[d.extra["eps"]])
        xs = d.input_arrays["x"][:, c].reshape(-1)
        rows.append(  # the numbers μ is computed from, before μ
            (", ".join(tex(x) for x in xs), [", ".join(tex(x.xreplace(subs)) for x in xs)])
        )
        rows += [
            (r"\mu_{%d}" % k, [tex(mu)]),
            (r"\sigma^2_{%d}" % k, [tex(var)]),
            (r"S_{%d}" % k, [tex(sp.Float(S, 6))]),
        ]
        for x, h in zip(xs, nm["xh"]):
            v = (x.xreplace(subs) - mu) / S
            rows.append((tex(h), [tex(sp.Integer(0) if v == 0 else sp.Float(v, 6))]))
    return [("p", "With the numbers of this instance:"), ("eq", rows)]


def batchnorm_document(d: Derivation) -> Doc:
    """Worked problem 11 as the notes write it: per-channel statistics, the named
    intermediates μ, σ², x̂, the Jacobian and the gradients in them, the reshape argument."""
    N, C, H, W = d.input_arrays["x"].shape
    M = N * H * W
    doc = Doc()
    doc.h("Batch normalisation for CNNs (worked problem 11)")
    doc.p(
        f"Problem. A batch of {N} with {C} channel{'s' * (C > 1)} of size {H}×{W}: normalise each "
        f"channel with statistics over the batch and every position, scale by $\\gamma_c$ and "
        f"shift by $\\beta_c$; given the upstream gradient $\\delta = \\partial L/\\partial y$, "
        f"derive $\\partial L/\\partial x$, $\\partial L/\\partial \\gamma$ and "
        f"$\\partial L/\\partial \\beta$. Indices are 1-based, as in the course notes."
    )
    doc.h("Why per channel: the reshape", 2)
    doc.p(
        "A CNN must treat a picture the same way wherever a pattern sits, so the outputs of one "
        "filter at every position of every picture count as samples of one mini-batch. Permuting "
        "(B, C, H, W) to (B, H, W, C) and reshaping to (BHW, C) makes each channel a column: "
        "the fully connected batch norm over BHW samples, whose gradient is reshaped back. "
        f"Here each channel has $M = N H W = {M}$ values."
    )
    doc.h("Forward pass with named intermediates", 2)
    gamma, beta = d.input_arrays["gamma"], d.input_arrays["beta"]
    for c in range(C):
        nm = _named(d, c)
        k = nm["k"]
        rows = [
            (r"\mu_{%d}" % k, tex_split(d.extra["mu"][c])),
            (
                r"\sigma^2_{%d}" % k,
                [r"\frac{1}{%d} \sum_{n,i,j} (x_{n,%d,i,j} - \mu_{%d})^2" % (M, k, k)],
            ),
            (r"S_{%d}" % k, [r"\sqrt{\sigma^2_{%d} + \epsilon}" % k]),
        ]
        for (n, i, j), h in zip(_positions(d), nm["xh"]):
            xs = tex(d.input_arrays["x"][n, c, i, j])
            rows.append((tex(h), [r"\frac{%s - \mu_{%d}}{S_{%d}}" % (xs, k, k)]))
        for (n, i, j), h in zip(_positions(d), nm["xh"]):
            rows.append((indexed("y", (n, c, i, j)), [tex(gamma[c] * h + beta[c])]))
        doc.eq(rows)
    eps_value = float(d.constants[d.extra["eps"]])
    doc.p(
        f"Here $\\epsilon = {sp.latex(sp.Float(eps_value, 3))}$ (PyTorch's default, and what "
        r"derivgrad's kernels use); the notes' code uses $\epsilon = 10^{-8}$. Since "
        r"$\partial \ln S / \partial \epsilon = 1/(2 S^2)$, changing $\epsilon$ by "
        r"$\Delta\epsilon$ changes every $\hat x$ by the relative amount "
        r"$\Delta\epsilon / (2(\sigma^2 + \epsilon))$ to first order."
    )
    doc.blocks.extend(_statistics_with_numbers(d))
    doc.h("Local derivatives", 2)
    doc.p(
        r"With $\partial \mu/\partial x_i = 1/M$ and $\partial \sigma^2/\partial x_i = 2(x_i - "
        r"\mu)/M$, the quotient rule gives, for two positions $i, o$ of one channel (the indicator "
        r"$\mathbf{1}[i = o]$ is 1 when they are the same position), "
        r"$\frac{\partial \hat x_o}{\partial x_i} = \frac{1}{S}\left(\mathbf{1}[i = o] - "
        r"\frac{1}{M} - \frac{\hat x_i \hat x_o}{M}\right)$, so "
        r"$\partial y_o/\partial x_i = \gamma\, \partial \hat x_o/\partial x_i$, "
        r"$\partial y_o/\partial \gamma = \hat x_o$ and $\partial y_o/\partial \beta = 1$. "
        r"Entries of different channels are 0. For channel 1:"
    )
    nm = _named(d, 0)
    pos = _positions(d)
    rows = [
        (
            r"\frac{\partial y_{%s}}{\partial %s}"
            % (
                ",".join(map(str, (pos[o][0] + 1, 1, pos[o][1] + 1, pos[o][2] + 1))),
                indexed("x", (pos[i][0], 0, pos[i][1], pos[i][2])),
            ),
            tex_split(sp.factor(nm["J"][i][o])),  # γ(x̂ᵢx̂ₒ + 1)/(4S): no fraction in a fraction
        )
        for i in range(nm["M"])
        for o in range(nm["M"])
    ]
    doc.eq(rows[:16])
    if len(rows) > 16:
        doc.p(f"(and {len(rows) - 16} more entries of the same form, not printed.)")
    doc.h("Chain rule and closed form", 2)
    doc.p(
        r"Contracting with $\delta$: $\frac{\partial L}{\partial x_i} = \sum_o \delta_o "
        r"\frac{\gamma}{S}\left(\mathbf{1}[i = o] - \frac{1}{M} - \frac{\hat x_i \hat x_o}{M}"
        r"\right) = \frac{\gamma}{S}\left(\delta_i - \operatorname{mean}(\delta) - \hat x_i\, "
        r"\operatorname{mean}(\delta \hat x)\right)$, the means over the channel's $M$ values:"
    )
    for c in range(C):
        nm = _named(d, c)
        rows = [
            (r"\frac{\partial L}{\partial %s}" % indexed("x", (n, c, i, j)), tex_split(e))
            for (n, i, j), e in zip(pos, nm["dx"])
        ]
        rows.append((r"\frac{\partial L}{\partial \gamma_{%d}}" % nm["k"], tex_split(nm["dgamma"])))
        rows.append(
            (r"\frac{\partial L}{\partial \beta_{%d}}" % nm["k"], tex_split(sp.Add(*nm["dl"])))
        )
        doc.eq(rows[:18])
        if len(rows) > 18:
            doc.p(f"(and {len(rows) - 18} more entries of the same form, not printed.)")
    doc.h("Proof", 2)
    if d.verified and named_forms_hold(d):
        doc.p(
            r"derivgrad proved, entry by entry, that the closed forms equal the chain rule of "
            r"the full expressions, and that the named forms above are those expressions once "
            r"$\hat x = (x - \mu)/S$ and $S = \sqrt{\sigma^2 + \epsilon}$ are substituted back "
            r"(writing $S$ as a positive symbol and expanding the numerator of each difference "
            r"to zero)."
        )
    else:
        doc.p(
            r"Not verified: the symbolic proof was skipped for this document. Run "
            r"\texttt{d.verify()}, or derive without \texttt{--no-verify}, before relying on it."
        )
    return doc


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
    us_per_step = 4100.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Batch normalisation for CNNs"
    problems = "11"
    params = (
        Param("batch", "int", "samples in the batch"),
        Param("channels", "int", "channels (statistics are per channel)"),
        Param("input", "size", "spatial size, an int or HxW"),
    )

    def build(self, **params: Any) -> Derivation:
        return batchnorm2d(**params)

    def cost(self, **params: Any) -> int:
        N = count(self.name, "batch", params.get("batch", 2))
        C = count(self.name, "channels", params.get("channels", 1))
        H, W = pair(self.name, "input", params.get("input", (1, 2)), 1)
        M = N * H * W  # every output of a channel holds the channel's mean and variance
        return symbolic_work(M * C, M, M + 2, M * C + 2 * C)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        eps = float(d.constants[d.extra["eps"]])
        y, cache = K.batchnorm2d_forward(values["x"], values["gamma"], values["beta"], eps=eps)
        dx, dg, db = K.batchnorm2d_backward(upstream, cache)
        return y, {"x": dx, "gamma": dg, "beta": db}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return _sizes()

    def document(self, d: Derivation) -> Doc:
        return batchnorm_document(d)

    def worked_problems(self) -> list[Problem]:
        return [
            Problem(
                "11",
                "Batch normalisation for CNNs",
                params=dict(batch=2, channels=1, input=(1, 2)),
                # numbers whose mean and variance are exact: μ = 3, σ² = 7/2
                values=dict(
                    x=[[[[1, 3]]], [[[2, 6]]]],
                    gamma=[2],
                    beta=[1],
                    upstream=[[[[1, -1]]], [[[2, 0]]]],
                ),
            )
        ]


OPS = (BatchNorm2d(),)
