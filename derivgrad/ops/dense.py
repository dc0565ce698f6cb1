r"""Symbolic linear layer, ReLU, softmax, softmax cross-entropy, logistic regression,
the residual block and flatten (worked problems 1-3)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from derivgrad import kernels as K

from ..documents.document import (
    ABBREVIATED,
    Block,
    abbreviate,
    abbreviate_array,
    abbreviated,
    bmatrix,
)
from ..symbolic.derivation import Derivation, Rule
from ..symbolic.functions import LogSumExp, Relu, Step, stable_forms_agree, stable_softmax
from ..symbolic.params import ParamError, check_unknown, count
from ..symbolic.proofs import Lemma, Rational
from ..symbolic.shapes import linear_layer
from ..symbolic.tensors import symbols
from .base import Op, Param, Problem, symbolic_work


def _vec(name, n, latex=None):
    return symbols(name, (n,), latex=latex)


def linear(**params: Any) -> Derivation:
    r"""``y = W x + b`` for one sample (``y = x Wᵀ + b`` row-wise for a batch).

    Closed forms: ``dx = Wᵀ δ``, ``dW = δ xᵀ`` (summed over the batch), ``db = δ``."""
    op = "linear"
    check_unknown(op, params, ("features", "outputs", "batch", "bias"))
    n_in = count(op, "features", params.get("features", 3))
    n_out = count(op, "outputs", params.get("outputs", 2))
    N = count(op, "batch", params.get("batch", 1))
    bias = params.get("bias", True)
    xs = symbols("x", (N, n_in) if N > 1 else (n_in,))
    W = symbols("W", (n_out, n_in))
    b = _vec("b", n_out)
    x = xs.reshape(N, n_in)
    y = np.array(
        [
            [
                sp.Add(*[W[o, i] * x[n, i] for i in range(n_in)]) + (b[o] if bias else 0)
                for o in range(n_out)
            ]
            for n in range(N)
        ],
        dtype=object,
    )
    ds = symbols("d", (N, n_out) if N > 1 else (n_out,), latex=r"\delta")
    d = ds.reshape(N, n_out)
    Wm, dm, xm = sp.Matrix(W), sp.Matrix(d), sp.Matrix(x)
    rules = {
        "x": Rule(
            "dx = Wᵀ δ",
            lambda: np.array((dm * Wm).tolist(), dtype=object).reshape(xs.shape),  # rows: Wᵀ δ_n
        ),
        "W": Rule(
            "dW = δ xᵀ (summed over the batch)",
            lambda: np.array((dm.T * xm).tolist(), dtype=object),  # Σ_n δ_n x_nᵀ
        ),
    }
    inputs = {"x": xs, "W": W}
    if bias:
        inputs["b"] = b
        rules["b"] = Rule(
            "db = δ (summed over the batch)",
            lambda: np.array([sp.Add(*d[:, o]) for o in range(n_out)], dtype=object),
        )
    return Derivation(
        op=op,
        params=dict(features=n_in, outputs=n_out, batch=N, bias=bias),
        inputs=inputs,
        output=y.reshape(ds.shape),
        upstream=ds,
        rules=rules,
    )


def relu(**params: Any) -> Derivation:
    r"""``y = relu(z)`` elementwise; closed form ``dz = δ ⊙ 1[z > 0]`` (0 at the kink)."""
    op = "relu"
    check_unknown(op, params, ("features",))
    n = count(op, "features", params.get("features", 3))
    z = _vec("z", n)
    d = _vec("d", n, latex=r"\delta")
    y = np.array([Relu(v) for v in z], dtype=object)
    rules = {
        "z": Rule(
            "dz = δ ⊙ 1[z > 0]",
            lambda: np.array([d[i] * Step(z[i]) for i in range(n)], dtype=object),
        )
    }
    return Derivation(
        op=op, params=dict(features=n), inputs={"z": z}, output=y, upstream=d, rules=rules
    )


def _softmax(z):
    # p_i = e^{z_i − lse(z)}: the max-shift form, finite at any logits (see LogSumExp)
    return stable_softmax(z)


def _print_as(z: Any, p: Any, zsyms: Any = None) -> dict[Any, Any]:
    """Documents print ``e^{z_i − lse(z)}`` as ``p_i`` (and a logit expression as ``z_i``)."""
    names = {e: s for e, s in zip(p, symbols("p", (len(p),)))}
    if zsyms is not None:
        names[LogSumExp(*z)] = LogSumExp(*zsyms)
    return names


def stable_definitions(d: Derivation) -> list[Block]:
    """The max-shift / log-sum-exp step of the notes, stated before the forward pass of every
    document that uses softmax; "proved" only when verify() proved it."""
    return [
        ("h", (2, "Softmax, computed stably")),
        (
            "p",
            r"The probabilities are $p_i = e^{z_i} / \sum_j e^{z_j}$, but $e^{1000}$ overflows "
            r"in floating point. For any number $m$, $\log \sum_j e^{z_j}$ equals "
            r"$m + \log \sum_j e^{z_j - m}$; with $m = \max_j z_j$ every exponent is at most 0 "
            r"and nothing overflows. Writing $\operatorname{lse}(z)$ for this log-sum-exp,",
        ),
        (
            "eq",
            [
                (
                    r"\operatorname{lse}(z)",
                    [r"\log \sum_j e^{z_j} = m + \log \sum_j e^{z_j - m}, \quad m = \max_j z_j"],
                ),
                (r"p_i", [r"\frac{e^{z_i}}{\sum_j e^{z_j}} = e^{z_i - \operatorname{lse}(z)}"]),
                (r"\frac{\partial \operatorname{lse}(z)}{\partial z_j}", [r"p_j"]),
            ],
        ),
        (
            "p",
            (
                "derivgrad proved these three identities symbolically (for every $m$)"
                if d.verified
                else "These identities are not verified in this document (the proof was skipped)"
            )
            + r", and the expressions below use them: $p_i$ stands for "
            r"$e^{z_i - \operatorname{lse}(z)}$, the form that stays finite at any logits.",
        ),
    ]


def _lemmas(k: int) -> list[Lemma]:
    return [
        Lemma(
            "the max-shift log-sum-exp and its derivative equal the plain log Σ e^{z_j}",
            functools.partial(stable_forms_agree, k),
        )
    ]


def softmax(**params: Any) -> Derivation:
    r"""``p_i = e^{z_i} / Σ_j e^{z_j}``.  The Jacobian (input-first layout) is
    ``∂p_i/∂z_j = p_i (δ_ij − p_j)``, i.e. ``diag(p) − p pᵀ`` (symmetric), so
    ``dz = (diag(p) − p pᵀ) δ = p ⊙ (δ − ⟨p, δ⟩)`` (worked problem 1)."""
    op = "softmax"
    check_unknown(op, params, ("classes",))
    k = count(op, "classes", params.get("classes", 3))
    z = _vec("z", k)
    d = _vec("d", k, latex=r"\delta")
    p = _softmax(z)
    pd = sp.Add(*[p[j] * d[j] for j in range(k)])
    rules = {
        "z": Rule(
            "dz = (diag(p) − p pᵀ) δ = p ⊙ (δ − ⟨p, δ⟩)",
            lambda: np.array([p[i] * (d[i] - pd) for i in range(k)], dtype=object),
        )
    }
    der = Derivation(
        op=op,
        params=dict(classes=k),
        inputs={"z": z},
        output=p,
        upstream=d,
        rules=rules,
        proof=Rational(lemmas=_lemmas(k)),
        extra=dict(print_as=_print_as(z, p)),
    )
    return der


def _label(op, params, k):
    y = count(op, "label", params.get("label", 1))
    if y > k:
        raise ParamError(f"{op}: label must be one of 1..{k} (1-based, as in the notes), got {y}")
    return y - 1


def softmax_jacobian(d: Derivation) -> np.ndarray:
    """The closed-form softmax Jacobian ``diag(p) − p pᵀ`` (symmetric, so the layout does not
    matter) in the derivation's ``z`` symbols (worked problem 1)."""
    p = _softmax(d.input_arrays["z"])
    k = len(p)
    return np.array(
        [[p[i] * ((1 if i == j else 0) - p[j]) for j in range(k)] for i in range(k)], dtype=object
    )


def softmax_cross_entropy(**params: Any) -> Derivation:
    r"""``L = −log p_y(z)`` for one sample with label ``y`` (1-based); ``dz = p − e_y``."""
    op = "softmax_cross_entropy"
    check_unknown(op, params, ("classes", "label"))
    k = count(op, "classes", params.get("classes", 3))
    y = _label(op, params, k)
    z = _vec("z", k)
    p = _softmax(z)
    L = -z[y] + LogSumExp(*z)
    rules = {
        "z": Rule(
            "dz = p − e_y",
            lambda: np.array([p[i] - (1 if i == y else 0) for i in range(k)], dtype=object),
        )
    }
    return Derivation(
        op=op,
        params=dict(classes=k, label=y + 1),
        inputs={"z": z},
        output=np.array([L], dtype=object),
        upstream=np.array([sp.Integer(1)], dtype=object),
        rules=rules,
        proof=Rational(lemmas=_lemmas(k)),
        extra=dict(p=p, print_as=_print_as(z, p)),
    )


def logistic_regression(**params: Any) -> Derivation:
    r"""Multiclass logistic regression ``L = −log p_y(W x + b)`` (worked problem 2):
    ``∇_W L = (p − e_y) xᵀ``, ``∇_b L = p − e_y``, ``∇_x L = Wᵀ (p − e_y)``."""
    op = "logistic_regression"
    check_unknown(op, params, ("classes", "features", "label"))
    k = count(op, "classes", params.get("classes", 3))
    n = count(op, "features", params.get("features", 2))
    y = _label(op, params, k)
    x = _vec("x", n)
    W = symbols("W", (k, n))
    b = _vec("b", k)
    z = np.array(
        [sp.Add(*[W[i, j] * x[j] for j in range(n)]) + b[i] for i in range(k)], dtype=object
    )
    p = _softmax(z)
    L = -z[y] + LogSumExp(*z)
    r = np.array([p[i] - (1 if i == y else 0) for i in range(k)], dtype=object)  # p − e_y
    rules = {
        "W": Rule(
            "∇_W L = (p − e_y) xᵀ",
            lambda: np.array([[r[i] * x[j] for j in range(n)] for i in range(k)], dtype=object),
        ),
        "b": Rule("∇_b L = p − e_y", lambda: r.copy()),
        "x": Rule(
            "∇_x L = Wᵀ (p − e_y)",
            lambda: np.array(
                [sp.Add(*[W[i, j] * r[i] for i in range(k)]) for j in range(n)], dtype=object
            ),
        ),
    }
    return Derivation(
        op=op,
        params=dict(classes=k, features=n, label=y + 1),
        inputs={"W": W, "b": b, "x": x},
        output=np.array([L], dtype=object),
        upstream=np.array([sp.Integer(1)], dtype=object),
        rules=rules,
        proof=Rational(lemmas=_lemmas(k)),
        extra=dict(z=z, p=p, print_as=_print_as(z, p, symbols("z", (k,)))),
    )


def chain_through_z(d: Derivation) -> dict[str, np.ndarray]:
    """The chain rule of logistic regression one factor at a time, in the notes' ``p``:
    ``∂L/∂p`` (of ``L = −log p_y``), ``∂p/∂z`` (softmax), their product ``∂L/∂z``, and the
    products with ``∂z/∂W``, ``∂z/∂b``, ``∂z/∂x``.  Each factor is differentiated here by SymPy;
    the products are checked equal to the closed form (raises ``AssertionError`` if not)."""
    k, n = d.input_arrays["W"].shape
    y = d.params["label"] - 1
    W, x = d.input_arrays["W"], d.input_arrays["x"]
    z = symbols("z", (k,))
    p = _softmax(z)
    names = _print_as(z, p)
    P = symbols("p", (k,))
    dL_dp = np.array([sp.diff(-sp.log(P[y]), P[i]) for i in range(k)], dtype=object)
    dp_dz = np.array(
        [[abbreviate(sp.diff(p[i], z[j]), names) for j in range(k)] for i in range(k)],
        dtype=object,
    )
    dL_dz = np.array(
        [sp.expand(sum(dL_dp[i] * dp_dz[i, j] for i in range(k))) for j in range(k)],
        dtype=object,
    )
    # ∂z_i/∂W_{i,j} = x_j, ∂z_i/∂b_i = 1, ∂z_i/∂x_j = W_{i,j}: from z = Wx + b itself
    zx = d.extra["z"]
    dz_dW = np.array([[sp.diff(zx[i], W[i, j]) for j in range(n)] for i in range(k)], dtype=object)
    dz_db = np.array([sp.diff(zx[i], d.input_arrays["b"][i]) for i in range(k)], dtype=object)
    dz_dx = np.array([[sp.diff(zx[i], x[j]) for j in range(n)] for i in range(k)], dtype=object)
    out = dict(
        dL_dp=dL_dp,
        dp_dz=dp_dz,
        dL_dz=dL_dz,
        dz_dW=dz_dW,
        dz_db=dz_db,
        dz_dx=dz_dx,
        W=np.array([[dL_dz[i] * dz_dW[i, j] for j in range(n)] for i in range(k)], dtype=object),
        b=np.array([dL_dz[i] * dz_db[i] for i in range(k)], dtype=object),
        x=np.array(
            [sp.Add(*[dz_dx[i, j] * dL_dz[i] for i in range(k)]) for j in range(n)], dtype=object
        ),
    )
    shown = d.extra["print_as"]
    for name in ("W", "b", "x"):
        closed = abbreviate_array(d.grad_array(name), shown)
        for a, c in zip(out[name].reshape(-1), closed.reshape(-1)):
            if sp.expand(a - c) != 0:
                raise AssertionError(f"logistic regression: the chain through z gives {a} != {c}")
    return out


def _chain_section(d: Derivation) -> list[Block]:
    c = chain_through_z(d)
    y = d.params["label"]
    col = lambda a: bmatrix(a.reshape(-1, 1))  # noqa: E731
    return [
        ("h", (2, "The chain rule through z, step by step")),
        (
            "p",
            r"With the logits $z = Wx + b$ and $p = \operatorname{softmax}(z)$, the loss is "
            f"$L = -\\log p_{{{y}}}$ and the chain rule runs through $p$ and $z$: "
            r"$\frac{\partial L}{\partial z} = \left(\frac{\partial p}{\partial z}\right)^\top "
            r"\frac{\partial L}{\partial p}$, then "
            r"$\frac{\partial L}{\partial W_{i,j}} = \frac{\partial L}{\partial z_i} "
            r"\frac{\partial z_i}{\partial W_{i,j}}$, "
            r"$\frac{\partial L}{\partial b_i} = \frac{\partial L}{\partial z_i} "
            r"\frac{\partial z_i}{\partial b_i}$ and "
            r"$\frac{\partial L}{\partial x_j} = \sum_i \frac{\partial L}{\partial z_i} "
            r"\frac{\partial z_i}{\partial x_j}$. Each factor, differentiated:",
        ),
        (
            "eq",
            [
                (r"\frac{\partial L}{\partial p}", [col(c["dL_dp"])]),
                (
                    r"\frac{\partial p}{\partial z}",
                    [r"\operatorname{diag}(p) - p p^\top = " + bmatrix(c["dp_dz"])],
                ),
                (
                    r"\frac{\partial L}{\partial z}",
                    [
                        r"\left(\frac{\partial p}{\partial z}\right)^\top "
                        r"\frac{\partial L}{\partial p} = " + col(c["dL_dz"]) + f" = p - e_{{{y}}}"
                    ],
                ),
            ],
        ),
        (
            "p",
            r"From $z_i = \sum_j W_{i,j} x_j + b_i$ the only non-zero local derivatives are "
            r"$\partial z_i / \partial W_{i,j} = x_j$, $\partial z_i / \partial b_i = 1$ and "
            r"$\partial z_i / \partial x_j = W_{i,j}$, so the products are:",
        ),
        (
            "eq",
            [
                (
                    r"\frac{\partial L}{\partial W}",
                    [r"\frac{\partial L}{\partial z} x^\top = " + bmatrix(c["W"])],
                ),
                (
                    r"\frac{\partial L}{\partial b}",
                    [r"\frac{\partial L}{\partial z} = " + col(c["b"])],
                ),
                (
                    r"\frac{\partial L}{\partial x}",
                    [r"W^\top \frac{\partial L}{\partial z} = " + col(c["x"])],
                ),
            ],
        ),
        (
            "p",
            "These are the closed forms above, entry by entry (derivgrad checks it when it writes "
            "this section)."
            + (" " + ABBREVIATED if abbreviated(c["dp_dz"]) or abbreviated(c["W"]) else ""),
        ),
    ]


def residual(**params: Any) -> Derivation:
    r"""The skip connection ``y = W2 relu(W1 x) + x`` (worked problem 3), upstream ``δ_y``:
    ``∇_x L = W1ᵀ (1[W1 x > 0] ⊙ W2ᵀ δ_y) + δ_y``; also ``∇_{W2} L = δ_y relu(W1 x)ᵀ`` and
    ``∇_{W1} L = (1[W1 x > 0] ⊙ W2ᵀ δ_y) xᵀ``."""
    op = "residual"
    check_unknown(op, params, ("features", "hidden"))
    n = count(op, "features", params.get("features", 2))
    m = count(op, "hidden", params.get("hidden", 2))
    x = _vec("x", n)
    W1 = symbols("W1", (m, n), latex="W^{(1)}")
    W2 = symbols("W2", (n, m), latex="W^{(2)}")
    d = _vec("d", n, latex=r"\delta")
    h = [sp.Add(*[W1[k, j] * x[j] for j in range(n)]) for k in range(m)]
    a = [Relu(v) for v in h]
    y = np.array(
        [sp.Add(*[W2[i, k] * a[k] for k in range(m)]) + x[i] for i in range(n)], dtype=object
    )
    g = [
        Step(h[k]) * sp.Add(*[W2[i, k] * d[i] for i in range(n)]) for k in range(m)
    ]  # 1[W1x>0] ⊙ W2ᵀδ
    rules = {
        "x": Rule(
            "∇_x L = W1ᵀ (1[W1 x > 0] ⊙ W2ᵀ δ_y) + δ_y",
            lambda: np.array(
                [sp.Add(*[W1[k, j] * g[k] for k in range(m)]) + d[j] for j in range(n)],
                dtype=object,
            ),
        ),
        "W1": Rule(
            "∇_{W1} L = (1[W1 x > 0] ⊙ W2ᵀ δ_y) xᵀ",
            lambda: np.array([[g[k] * x[j] for j in range(n)] for k in range(m)], dtype=object),
        ),
        "W2": Rule(
            "∇_{W2} L = δ_y relu(W1 x)ᵀ",
            lambda: np.array([[d[i] * a[k] for k in range(m)] for i in range(n)], dtype=object),
        ),
    }
    return Derivation(
        op=op,
        params=dict(features=n, hidden=m),
        inputs={"x": x, "W1": W1, "W2": W2},
        output=y,
        upstream=d,
        rules=rules,
    )


def flatten(**params: Any) -> Derivation:
    r"""``y = vec(x)`` in row-major (C, H, W) order; ``dx = reshape(δ, x.shape)``."""
    from ..symbolic.params import pair

    op = "flatten"
    check_unknown(op, params, ("input", "channels"))
    H, W = pair(op, "input", params.get("input", (2, 2)), 1)
    C = count(op, "channels", params.get("channels", 2))
    x = symbols("x", (C, H, W))
    d = _vec("d", C * H * W, latex=r"\delta")
    return Derivation(
        op=op,
        params=dict(input=(H, W), channels=C),
        inputs={"x": x},
        output=x.reshape(-1).copy(),
        upstream=d,
        rules={"x": Rule("dx = reshape(δ, (C, H, W))", lambda: d.reshape(C, H, W).copy())},
    )


# -- the op protocol ---------------------------------------------------------------------------
Faces = tuple[np.ndarray, dict[str, np.ndarray]]
_FEATURES = Param("features", "int", "input features")
_CLASSES = Param("classes", "int", "number of classes k")
_LABEL = Param("label", "int", "the true class, 1-based as in the notes")


def _ints(**ranges: tuple[int, int]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({k: st.integers(lo, hi) for k, (lo, hi) in ranges.items()})


@st.composite
def _classes_label(draw: Any, **extra: tuple[int, int]) -> dict[str, Any]:
    k = draw(st.integers(2, 4))
    out = dict(classes=k, label=draw(st.integers(1, k)))
    out.update({name: draw(st.integers(lo, hi)) for name, (lo, hi) in extra.items()})
    return out


class Linear(Op):
    name = "linear"
    us_per_step = 10.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Linear layer"
    problems = "2"
    params = (
        _FEATURES,
        Param("outputs", "int", "output features"),
        Param("batch", "int", "samples in the batch"),
        Param("bias", "bool", "add a bias"),
    )

    def build(self, **params: Any) -> Derivation:
        return linear(**params)

    def cost(self, **params: Any) -> int:
        n = count(self.name, "features", params.get("features", 3))
        m = count(self.name, "outputs", params.get("outputs", 2))
        N = count(self.name, "batch", params.get("batch", 1))
        b = 1 if params.get("bias", True) else 0
        return symbolic_work(N * m, n + b, 2 * n + b, N * n + m * n + m * b)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> Faces:
        x = values["x"].reshape(-1, d.params["features"])
        b = values.get("b")
        y = K.linear_forward(x, values["W"], b)
        dx, dw, db = K.linear_backward(
            upstream.reshape(y.shape), x, values["W"], bias=b is not None
        )
        grads = {"x": dx.reshape(values["x"].shape), "W": dw}
        if b is not None:
            grads["b"] = db
        return y.reshape(upstream.shape), grads

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            dict(
                features=st.integers(1, 4),
                outputs=st.integers(1, 3),
                batch=st.integers(1, 3),
                bias=st.booleans(),
            )
        )

    def shapes(self, **params: Any) -> str:
        n_in = count("shapes linear", "features", params.get("features") or 1024)
        n_out = count("shapes linear", "outputs", params.get("outputs") or 10)
        return json.dumps(linear_layer(n_in, n_out))


class ReLU(Op):
    name = "relu"
    us_per_step = 800.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "ReLU"
    problems = "3"
    params = (_FEATURES,)

    def build(self, **params: Any) -> Derivation:
        return relu(**params)

    def cost(self, **params: Any) -> int:
        n = count(self.name, "features", params.get("features", 3))
        return symbolic_work(n, 1, 1, n)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> Faces:
        return K.relu_forward(values["z"]), {"z": K.relu_backward(upstream, values["z"])}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return _ints(features=(1, 5))

    def values(self, d: Derivation, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # |z| >= 0.1: a central difference across the kink measures nothing
        shape = d.inputs["z"].shape
        return {"z": rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 2.0, shape)}


class Softmax(Op):
    name = "softmax"
    us_per_step = 3600.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Softmax"
    problems = "1"
    params = (_CLASSES,)

    def build(self, **params: Any) -> Derivation:
        return softmax(**params)

    def cost(self, **params: Any) -> int:
        k = count(self.name, "classes", params.get("classes", 3))
        # k entries, each a k-term contraction of k-term Jacobian entries: measured ~k² (k=20:
        # 1.3 s, k=40: 4.5 s)
        return symbolic_work(k, k, 1, k)

    def definitions(self, d: Derivation) -> list[Block]:
        return stable_definitions(d)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> Faces:
        # the kernels have no separate softmax backward: use the rule dz = p ⊙ (δ − ⟨p, δ⟩)
        p = K.softmax(values["z"])
        return p, {"z": p * (upstream - np.dot(p, upstream))}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return _ints(classes=(2, 5))

    def sections(self, d: Derivation) -> list[Block]:
        k = d.params["classes"]
        p = symbols("p", (k,))  # the names the documents print e^{z_i − lse(z)} as
        Jp = np.array(
            [[p[i] * ((1 if i == j else 0) - p[j]) for j in range(k)] for i in range(k)],
            dtype=object,
        )
        shown = abbreviate_array(d.jacobian_array("z"), d.extra.get("print_as"))
        drawn = Jp.size <= 36 and all(
            sp.expand(a - b) == 0 for a, b in zip(shown.reshape(-1), Jp.reshape(-1))
        )
        out: list[Block] = [
            ("h", (2, "The softmax Jacobian")),
            (
                "p",
                r"Writing $p_i$ for the probabilities, $\partial p_i / \partial z_j = "
                r"p_i(\mathbf{1}[i = j] - p_j)$ (the indicator $\mathbf{1}[i = j]$ is 1 when "
                r"$i = j$ and 0 otherwise; $\delta$ is kept for the upstream gradient), that is "
                r"$\nabla p_i = p_i(e_i - p)$ and"
                + (
                    r" $J = \operatorname{diag}(p) - p p^\top$, the matrix "
                    r"$\partial y / \partial z$ drawn above (it is symmetric, so either layout "
                    "gives it)."
                    if drawn
                    else ""
                ),
            ),
        ]
        if drawn:  # said once: the local derivatives drew this matrix
            return out
        return (
            out
            + [
                ("eq", [(r"J = \operatorname{diag}(p) - p p^\top", [bmatrix(Jp)])]),
            ]
            + ([("p", ABBREVIATED)] if abbreviated(Jp) else [])
        )

    def worked_problems(self) -> list[Problem]:
        return [Problem("1", "The softmax Jacobian", params=dict(classes=3))]


class SoftmaxCrossEntropy(Op):
    name = "softmax_cross_entropy"
    us_per_step = 500.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Softmax cross-entropy"
    problems = "2"
    params = (_CLASSES, _LABEL)

    def build(self, **params: Any) -> Derivation:
        return softmax_cross_entropy(**params)

    def cost(self, **params: Any) -> int:
        k = count(self.name, "classes", params.get("classes", 3))
        return symbolic_work(1, k, k, k)

    def definitions(self, d: Derivation) -> list[Block]:
        return stable_definitions(d)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> Faces:
        label = np.array([d.params["label"] - 1])
        loss, p = K.softmax_cross_entropy_forward(values["z"][None], label)
        return np.array([loss]), {"z": K.softmax_cross_entropy_backward(p, label)[0]}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return _classes_label()


class LogisticRegression(Op):
    name = "logistic_regression"
    us_per_step = 120.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Multiclass logistic regression"
    problems = "2"
    params = (_CLASSES, _FEATURES, _LABEL)

    def build(self, **params: Any) -> Derivation:
        return logistic_regression(**params)

    def cost(self, **params: Any) -> int:
        k = count(self.name, "classes", params.get("classes", 3))
        n = count(self.name, "features", params.get("features", 2))
        return symbolic_work(1, k * (n + 1), k * (n + 1) + n, k * (n + 1) + n)

    def definitions(self, d: Derivation) -> list[Block]:
        return stable_definitions(d)

    def sections(self, d: Derivation) -> list[Block]:
        return _chain_section(d)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> Faces:
        label = np.array([d.params["label"] - 1])
        x = values["x"][None]
        z = K.linear_forward(x, values["W"], values["b"])
        loss, p = K.softmax_cross_entropy_forward(z, label)
        dz = K.softmax_cross_entropy_backward(p, label)
        dx, dW, db = K.linear_backward(dz, x, values["W"])
        return np.array([loss]), {"x": dx[0], "W": dW, "b": db}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return _classes_label(features=(1, 3))

    def worked_problems(self) -> list[Problem]:
        return [
            Problem(
                "2", "Multiclass logistic regression", params=dict(classes=3, features=2, label=2)
            )
        ]


class Residual(Op):
    name = "residual"
    us_per_step = 50.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Skip connection y = W2 relu(W1 x) + x"
    problems = "3"
    params = (_FEATURES, Param("hidden", "int", "hidden units"))

    def build(self, **params: Any) -> Derivation:
        return residual(**params)

    def cost(self, **params: Any) -> int:
        n = count(self.name, "features", params.get("features", 2))
        m = count(self.name, "hidden", params.get("hidden", 2))
        return symbolic_work(n, m * (n + 1) + 1, 2 * m * n + n, 2 * m * n + n)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> Faces:
        x = values["x"][None]
        h = K.linear_forward(x, values["W1"])
        a = K.relu_forward(h)
        y = K.linear_forward(a, values["W2"]) + x
        da, dW2, _ = K.linear_backward(upstream[None], a, values["W2"], bias=False)
        dh = K.relu_backward(da, h)
        dx, dW1, _ = K.linear_backward(dh, x, values["W1"], bias=False)
        return y[0], {"x": dx[0] + upstream, "W1": dW1, "W2": dW2}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return _ints(features=(1, 3), hidden=(1, 3))

    def worked_problems(self) -> list[Problem]:
        return [
            Problem(
                "3",
                "A skip connection around one ReLU layer",
                params=dict(features=2, hidden=2),
            )
        ]


class Flatten(Op):
    name = "flatten"
    us_per_step = 200.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Flatten"
    problems = "12"
    params = (
        Param("input", "size", "input size, an int or HxW"),
        Param("channels", "int", "input channels"),
    )

    def build(self, **params: Any) -> Derivation:
        return flatten(**params)

    def cost(self, **params: Any) -> int:
        from ..symbolic.params import pair

        H, W = pair(self.name, "input", params.get("input", (2, 2)), 1)
        size = H * W * count(self.name, "channels", params.get("channels", 2))
        return symbolic_work(size, 1, 1, size)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> Faces:
        return values["x"].reshape(-1), {"x": upstream.reshape(values["x"].shape)}

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            dict(
                input=st.tuples(st.integers(1, 3), st.integers(1, 3)),
                channels=st.integers(1, 2),
            )
        )


OPS = (
    Linear(),
    ReLU(),
    Softmax(),
    SoftmaxCrossEntropy(),
    LogisticRegression(),
    Residual(),
    Flatten(),
)
