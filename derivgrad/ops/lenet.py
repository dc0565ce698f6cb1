r"""The course LeNet (seed 002, worked problem 12) on a reduced instance, derived layer by
layer: conv F@K×K (+bias) → max-pool 2×2/2 → flatten → fc (hidden) → ReLU → fc (classes)
→ softmax cross-entropy with label y.

The closed form is the scalar backward pass of the notes, each δ written out and each
layer's rule taken from that layer's own face (conv ``rule_dw``/``rule_db``, max-pool
routing), so the network proves the rules composed:

.. code-block:: text

    δ_s  = p − e_y  (logits s)             dW2 = δ_s aᵀ,   db2 = δ_s
    δ_a  = W2ᵀ δ_s,  δ_h = δ_a ⊙ 1[h > 0]  dW1 = δ_h fᵀ,   db1 = δ_h
    δ_f  = W1ᵀ δ_h → reshape → δ_pool → routed to each window's first maximum → δ_z
    dWc  = X ⋆ δ_z,  dbc = Σ δ_z            (z: the convolution's output)
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from derivgrad.kernels import output_size

from ..documents.document import (
    ABBREVIATED,
    Doc,
    abbreviated,
    bmatrix,
    tex_split,
)
from ..symbolic.derivation import Derivation, Rule
from ..symbolic.functions import (
    LogSumExp,
    Relu,
    Step,
    WindowMax,
    stable_forms_agree,
    stable_softmax,
)
from ..symbolic.params import ParamError, check_unknown, count, pair
from ..symbolic.proofs import Lemma, Rational
from ..symbolic.tensors import correlate, symbols
from .base import Op, Param, Problem, symbolic_work
from .conv import rule_db, rule_dw
from .pool import rule_maxpool_dx, window_positions


def lenet(**params: Any) -> Derivation:
    op = "lenet"
    H, W, K, F, hid, k, y = _sizes(op, params)
    HO, WO = output_size(H, K), output_size(W, K)
    HP, WP = output_size(HO, 2, 2), output_size(WO, 2, 2)
    nf = F * HP * WP
    x = symbols("x", (H, W))
    Wc, bc = symbols("w", (F, K, K)), symbols("b", (F,))
    W1, b1 = symbols("W1", (hid, nf), latex="W^{(1)}"), symbols("b1", (hid,), latex="b^{(1)}")
    W2, b2 = symbols("W2", (k, hid), latex="W^{(2)}"), symbols("b2", (k,), latex="b^{(2)}")
    # forward, layer by layer
    zc = correlate(x[None], Wc[:, None], (1, 1), (1, 1))
    for f in range(F):
        zc[f] = zc[f] + bc[f]
    wins = window_positions(F, HO, WO, (2, 2), (2, 2), (0, 0), HP, WP)
    pooled = np.empty((F, HP, WP), dtype=object)
    for key, pos in wins.items():
        pooled[key] = WindowMax(*[zc[q] for q in pos])
    f_ = pooled.reshape(-1)
    h = _affine(W1, f_, b1)
    a = np.array([Relu(v) for v in h], dtype=object)
    z = _affine(W2, a, b2)
    p = stable_softmax(z)  # e^{z_i − lse(z)}: finite at any logits
    L = -z[y] + LogSumExp(*z)

    # backward, layer by layer (the δ's of the notes): one function, used twice — on the
    # full expressions for the proof, on per-layer symbols for the document
    deltas = _backward(W1, W2, zc, wins, p, h, y, (F, HP, WP))
    dz, dh, dconv = deltas["z"], deltas["h"], deltas["conv"]
    disp = _display(zc, wins, W1, b1, W2, b2, y, (F, HP, WP))
    rules = {
        "W2": Rule(
            "dW2 = δ_s aᵀ",
            lambda: np.array([[dz[i] * a[j] for j in range(hid)] for i in range(k)], dtype=object),
        ),
        "b2": Rule("db2 = δ_s = p − e_y", lambda: dz.copy()),
        "W1": Rule(
            "dW1 = δ_h fᵀ",
            lambda: np.array(
                [[dh[i] * f_[j] for j in range(nf)] for i in range(hid)], dtype=object
            ),
        ),
        "b1": Rule("db1 = δ_h", lambda: dh.copy()),
        "w": Rule(
            "dw = x ⋆ δ_z",
            lambda: rule_dw(x[None, None], dconv[None], (K, K), (1, 1), (0, 0), (1, 1))[:, 0],
        ),
        "b": Rule("db = Σ δ_z", lambda: rule_db(dconv[None])),
    }
    inputs = {"w": Wc, "b": bc, "W1": W1, "b1": b1, "W2": W2, "b2": b2, "x": x}
    lemma = Lemma(
        "the max-shift log-sum-exp and its derivative equal the plain log Σ e^{z_j}",
        functools.partial(stable_forms_agree, k),
    )
    der = Derivation(
        op=op,
        params=dict(input=(H, W), kernel=K, filters=F, hidden=hid, classes=k, label=y + 1),
        inputs=inputs,
        output=np.array([L], dtype=object),
        upstream=np.array([sp.Integer(1)], dtype=object),
        rules=rules,
        proof=Rational(lemmas=[lemma]),
        extra=dict(
            conv=zc,
            pooled=pooled,
            flat=f_,
            h=h,
            a=a,
            z=z,
            p=p,
            deltas=deltas,
            display=disp,
            shapes=dict(conv=(F, HO, WO), pool=(F, HP, WP), flat=(nf,), fc1=(hid,), fc2=(k,)),
        ),
    )
    return der


def _sizes(op: str, params: Mapping[str, Any]) -> tuple[int, int, int, int, int, int, int]:
    """``(H, W, K, F, hidden, classes, label0)`` checked: the pooled map must exist, the
    label be a class, and the instance small enough for SymPy."""
    check_unknown(op, params, ("input", "kernel", "filters", "hidden", "classes", "label"))
    H, W = pair(op, "input", params.get("input", (4, 4)), 1)
    K = count(op, "kernel", params.get("kernel", 3))
    F = count(op, "filters", params.get("filters", 2))
    hid = count(op, "hidden", params.get("hidden", 2))
    k = count(op, "classes", params.get("classes", 2))
    y = count(op, "label", params.get("label", 1)) - 1
    if y >= k:
        raise ParamError(f"{op}: label must be one of 1..{k}, got {y + 1}")
    HO, WO = output_size(H, K), output_size(W, K)
    HP, WP = output_size(HO, 2, 2), output_size(WO, 2, 2)
    if min(HP, WP) < 1:
        raise ParamError(f"{op}: input {H}x{W} is too small for a {K}x{K} conv and a 2x2 pool")
    return H, W, K, F, hid, k, y  # its size is checked by the one guard, from LeNet.cost


def _affine(Wm: np.ndarray, v: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``W v + b`` as an object array of sums."""
    rows, cols = Wm.shape
    return np.array(
        [sp.Add(*[Wm[i, j] * v[j] for j in range(cols)]) + b[i] for i in range(rows)],
        dtype=object,
    )


def _display(zc, wins, W1, b1, W2, b2, y, pool_shape) -> dict[str, Any]:
    """The document's version of the network: a fresh symbol per layer output (z, m, f, h, a,
    p) so each layer prints in terms of the one before, and the δ's in those symbols."""
    k, hid = W2.shape
    nf = W1.shape[1]
    Z = symbols("z", zc.shape)
    disp = dict(
        conv=zc,
        pooled=_pool_of(Z, wins, pool_shape),
        p=symbols("p", (k,)),
        h=symbols("h", (hid,)),
        a=symbols("a", (hid,)),
        f=symbols("f", (nf,)),
        z=Z,
    )
    disp["h_expr"] = _affine(W1, disp["f"], b1)
    disp["s_expr"] = _affine(W2, disp["a"], b2)
    disp["flat"] = disp["pooled"].reshape(-1)
    disp["deltas"] = _backward(W1, W2, Z, wins, disp["p"], disp["h"], y, pool_shape)
    return disp


def _pool_of(zc, wins, shape):
    out = np.empty(shape, dtype=object)
    for key, pos in wins.items():
        out[key] = WindowMax(*[zc[q] for q in pos])
    return out


def _backward(W1, W2, zc, wins, p, h, y, pool_shape):
    """The δ of every layer, from the logits back to the convolution output."""
    k, hid = W2.shape
    nf = W1.shape[1]
    dz = np.array([p[i] - (1 if i == y else 0) for i in range(k)], dtype=object)
    da = np.array([sp.Add(*[W2[i, j] * dz[i] for i in range(k)]) for j in range(hid)], dtype=object)
    dh = np.array([da[j] * Step(h[j]) for j in range(hid)], dtype=object)
    df = np.array(
        [sp.Add(*[W1[i, j] * dh[i] for i in range(hid)]) for j in range(nf)], dtype=object
    )
    dpool = df.reshape(pool_shape)
    dconv = rule_maxpool_dx(zc, dpool, wins)
    return dict(z=dz, a=da, h=dh, f=df, pool=dpool, conv=dconv)


# -- the vector form of the notes: im2col and convweight2rows --------------------------------
def im2col(x: np.ndarray, K: int, S: int = 1) -> np.ndarray:
    """The homework's ``im2col`` of one sample ``x (C, H, W)`` on object arrays: row ``(c, u,
    v)`` of the ``K×K`` window, column ``(i, j)`` of its position, both row-major (the layout
    of ``derivgrad.kernels.im2col`` and ``torch.nn.functional.unfold``)."""
    C, H, W = x.shape
    HO, WO = output_size(H, K, S), output_size(W, K, S)
    cols = np.empty((C * K * K, HO * WO), dtype=object)
    for c, u, v in np.ndindex(C, K, K):
        for i, j in np.ndindex(HO, WO):
            cols[(c * K + u) * K + v, i * WO + j] = x[c, i * S + u, j * S + v]
    return cols


def convweight2rows(w: np.ndarray) -> np.ndarray:
    """The homework's ``convweight2rows``: filter ``w (F, C, K, K)`` flattened, one row per
    filter, in the row order of :func:`im2col`."""
    return w.reshape(w.shape[0], -1)


def vector_form(d: Derivation) -> dict[str, np.ndarray]:
    """The forward pass in the notes' vector form, ``ẑ = w^(rows) x^(cols) + b``, ``h = W^(1) f
    + b^(1)``, ``s = W^(2) a + b^(2)``, each checked equal, entry by entry, to the scalar
    form the document prints (raises ``AssertionError`` if not)."""
    X, V = d.extra, d.extra["display"]
    x = d.input_arrays["x"]
    Wc, bc = d.input_arrays["w"], d.input_arrays["b"]
    K = Wc.shape[-1]
    rows = convweight2rows(Wc[:, None])
    cols = im2col(x[None], K)
    zhat = np.array(
        [
            [sp.Add(*(rows[f] * cols[:, q])) + bc[f] for q in range(cols.shape[1])]
            for f in range(rows.shape[0])
        ],
        dtype=object,
    )
    W1, b1, W2, b2 = (d.input_arrays[k] for k in ("W1", "b1", "W2", "b2"))
    h = np.array([sp.Add(*(W1[i] * V["f"])) + b1[i] for i in range(len(b1))], dtype=object)
    s = np.array([sp.Add(*(W2[i] * V["a"])) + b2[i] for i in range(len(b2))], dtype=object)
    pairs = [
        ("view(w^(rows) x^(cols) + b)", zhat.reshape(X["conv"].shape), X["conv"]),
        ("W^(1) f + b^(1)", h, V["h_expr"]),
        ("W^(2) a + b^(2)", s, V["s_expr"]),
    ]
    for what, vec, scalar in pairs:
        for a, c in zip(vec.reshape(-1), scalar.reshape(-1)):
            if sp.expand(a - c) != 0:
                raise AssertionError(f"lenet: the vector form {what} gives {a}, not {c}")
    return dict(rows=rows, cols=cols, zhat=zhat, h=h, s=s)


def _renamed(d: Derivation) -> dict[str, np.ndarray]:
    """The op's parameter and activation symbols in the document's names (the homework's:
    ``w^(conv)``, ``W^(fc1)``, ``z^(flat)``, ...), for printing the vector form."""
    V = d.extra["display"]
    named = dict(
        x=("x", "x"),
        w=("w", "w^{(conv)}"),
        b=("b", "b^{(conv)}"),
        W1=("W1", "W^{(fc1)}"),
        b1=("b1", "b^{(fc1)}"),
        W2=("W2", "W^{(fc2)}"),
        b2=("b2", "b^{(fc2)}"),
    )
    out = {k: symbols(n, d.input_arrays[k].shape, latex=t) for k, (n, t) in named.items()}
    out["f"] = symbols("zflat", V["f"].shape, latex="z^{(flat)}")
    out["a"] = symbols("zrelu", V["a"].shape, latex="z^{(relu)}")
    return out


def _vector_section(d: Derivation) -> list[tuple[str, Any]]:
    """The notes' forward pass in vector form beside the scalar one, with the check (made on
    the op's symbols by :func:`vector_form`, printed in the document's names)."""
    P = d.params
    F, K = P["filters"], P["kernel"]
    HO, WO = d.extra["shapes"]["conv"][1:]
    v = vector_form(d)  # raises unless each vector form is the scalar form
    R = _renamed(d)
    rename = {
        old: new
        for key, new_arr in R.items()
        for old, new in zip(
            (d.input_arrays[key] if key in d.input_arrays else d.extra["display"][key]).reshape(-1),
            new_arr.reshape(-1),
        )
    }
    sub = lambda a: np.vectorize(lambda e: e.xreplace(rename), otypes=[object])(a)  # noqa: E731
    rows, cols = sub(v["rows"]), sub(v["cols"])
    W1, b1, W2, b2 = (R[k] for k in ("W1", "b1", "W2", "b2"))
    col = lambda a: bmatrix(a.reshape(-1, 1))  # noqa: E731
    out: list[tuple[str, Any]] = [
        ("h", (2, "Forward pass in vector form")),
        (
            "p",
            r"As in the homework, the convolution is one matrix product. "
            r"$w^{(rows)} = \operatorname{convweight2rows}(w^{(conv)})$ holds each filter "
            rf"flattened as a row ($F \times (C_{{in}} K K) = {F} \times {K * K}$; "
            r"$20 \times 25$ in the homework), and "
            rf"$x^{{(cols)}} = \operatorname{{im2col}}(x, K={K}, S=1)$ holds each "
            r"$K \times K$ window flattened as a column ($(C_{in} K K) \times "
            rf"(S_{{out}} S_{{out}}) = {K * K} \times {HO * WO}$; $25 \times 576$ per sample "
            r"in the homework):",
        ),
        (
            "eq",
            [
                (r"w^{(rows)}", [bmatrix(rows)]),
                (r"x^{(cols)}", [bmatrix(cols)]),
            ],
        ),
    ]
    if abbreviated(rows) or abbreviated(cols):
        out.append(("p", ABBREVIATED))
    first = sub(v["zhat"][:1, :1])[0, 0]
    out += [
        (
            "p",
            r"Then $\hat z = w^{(rows)} x^{(cols)} + b^{(conv)}$ (the bias $b^{(conv)}_f$ added "
            rf"to every column of row $f$) is ${F} \times {HO * WO}$, and "
            rf"$z^{{(conv)}} = \operatorname{{view}}(\hat z, ({F}, {HO}, {WO}))$: entry "
            r"$(f, q)$ of $\hat z$ is row $f$ of $w^{(rows)}$ times column $q$ of $x^{(cols)}$, "
            r"the window at position $q$ (row-major), plus $b^{(conv)}_f$. For example",
        ),
        ("eq", [(r"\hat z_{1,1}", tex_split(first))]),
        (
            "p",
            r"which is $z^{(conv)}_{1,1,1}$, the first entry of layer 1's forward pass above. "
            r"The pooling is one maximum per $2 \times 2$ window, each window a column of "
            r"$\operatorname{im2col}(z^{(conv)}, K=2, S=2)$:",
        ),
        (
            "eq",
            [
                (
                    r"z^{(pool)}",
                    [
                        r"\max(\operatorname{im2col}(z^{(conv)}, K=2, S=2), "
                        r"\text{axis}=\text{rows})"
                    ],
                )
            ],
        ),
        (
            "p",
            "and the fully connected layers are matrix-vector products (the notes write them "
            r"for a batch of samples as rows, $z^{(fc1)} = z^{(flat)} (W^{(fc1)})^\top + "
            r"b^{(fc1)}$; each row of that is the transpose of the column form for one sample):",
        ),
        (
            "eq",
            [
                (
                    r"z^{(fc1)}",
                    [
                        r"W^{(fc1)} z^{(flat)} + b^{(fc1)} = "
                        + bmatrix(W1)
                        + " "
                        + col(R["f"])
                        + " + "
                        + col(b1)
                    ],
                ),
                (
                    r"z^{(fc2)}",
                    [
                        r"W^{(fc2)} z^{(relu)} + b^{(fc2)} = "
                        + bmatrix(W2)
                        + " "
                        + col(R["a"])
                        + " + "
                        + col(b2)
                    ],
                ),
                (
                    r"p",
                    [r"\frac{\exp(z^{(fc2)})}{\operatorname{sum}(\exp(z^{(fc2)}))}"],
                ),
            ],
        ),
    ]
    if abbreviated(W1) or abbreviated(W2):
        out.append(("p", ABBREVIATED))
    out.append(
        (
            "p",
            "derivgrad checked, entry by entry, when it wrote this section, that the three "
            r"vector forms above (of $z^{(conv)}$, $z^{(fc1)}$ and $z^{(fc2)}$) are the scalar "
            "forms of the convolution and the two fully connected layers: each difference "
            "expanded to zero.",
        )
    )
    return out


# -- the document: the network layer by layer, by the network machinery --------------------
# the homework's name of each layer of lenet_spec (its z^(flat) is the spec's "flatten")
_HOMEWORK_NAMES = {"flatten": "flat"}


def network(
    in_shape: tuple[int, int, int], filters: int, kernel: int, hidden: int, classes: int
) -> tuple[Any, list[str]]:
    """The LeNet of :func:`derivgrad.training.model.lenet_spec` written as a network of
    :mod:`derivgrad.nn` layers (each names the op whose derivation it is), and the homework's
    name of each layer, in order."""
    from .. import nn
    from ..training import model as M

    def layer(spec: Any) -> Any:
        if isinstance(spec, M.ConvSpec):
            return nn.Conv2d(spec.c_in, spec.c_out, spec.k, spec.stride, spec.padding)
        if isinstance(spec, M.PoolSpec):
            return nn.MaxPool2d(spec.k, spec.stride)
        if isinstance(spec, M.FlattenSpec):
            return nn.Flatten()
        if isinstance(spec, M.LinearSpec):
            return nn.Linear(spec.n_in, spec.n_out)
        if isinstance(spec, M.ReluSpec):
            return nn.ReLU()
        raise AssertionError(f"lenet: no nn layer for {spec!r}")

    spec = M.lenet_spec(filters, kernel, hidden, classes, in_shape)

    def make() -> Any:
        return nn.Sequential(*(layer(s) for _, s in spec))

    return make, [_HOMEWORK_NAMES.get(n, n) for n, _ in spec]


def _network_derivation(key: tuple[Any, ...], verify: bool) -> Any:
    from ..netdoc.derivation import derive_network, lively_seed

    (H, W), K, F, hid, k, label = key
    make, tags = network((1, H, W), F, K, hid, k)
    nd = derive_network(
        make,
        (1, H, W),
        label=label,
        seed=lively_seed(make, (1, H, W), label),
        spec="the course LeNet",
        verify=verify,
        tags=tags,
        letter="z",
    )
    nd.seed_note = "the first seed from 0 that gives every parameter a nonzero gradient"
    return nd


def network_derivation(d: Derivation) -> Any:
    """The lenet op's instance as a network, derived layer by layer by
    :mod:`derivgrad.netdoc` (proved per layer and, composed, as one expression, when ``d``
    is verified; numbers from the first seed that gives every parameter a nonzero gradient;
    checked against the kernels)."""
    P = d.params
    key = (tuple(P["input"]), P["kernel"], P["filters"], P["hidden"], P["classes"], P["label"])
    kept = _NETWORKS.get(d)  # one per derivation: every format renders the same
    if kept is None or kept[0] != bool(d.verified):
        kept = (bool(d.verified), _network_derivation(key, bool(d.verified)))
        _NETWORKS[d] = kept
    return kept[1]


_NETWORKS: weakref.WeakKeyDictionary[Derivation, tuple[bool, Any]] = weakref.WeakKeyDictionary()


def lenet_document(d: Derivation) -> Doc:
    """Worked problem 12 as the network machinery writes it (:mod:`derivgrad.netdoc`): the
    layers, their local rules, the chain, the numbers, the whole network as one expression,
    the check against the kernels; with the homework's vector form and parameter counts."""
    from ..netdoc.document import network_document

    P = d.params
    nd = network_derivation(d)
    counts: list[tuple[str, Any]] = [
        ("h", (2, "Parameter counts of the full network")),
        (
            "p",
            "With the homework's sizes (64×1×28×28 input, 20@5×5, 2×2 pooling, 2880 → 500 → 10): "
            "conv 20·25 + 20 = 520, fc1 2880·500 + 500 = 1,440,500, fc2 500·10 + 10 = 5,010; "
            "1,446,030 in all.",
        ),
    ]
    problem = (
        "Problem. The homework network, reduced: conv "
        f"{P['filters']}@${P['kernel']}\\times{P['kernel']}$ with bias → max-pool "
        f"$2\\times2$/2 → flatten → fc {P['hidden']} → ReLU → fc {P['classes']} (its layers "
        r"carry the homework's names: $z^{(conv)}$ is the convolution's output, "
        r"$\delta^{(fc2)} = \partial L / \partial z^{(fc2)}$, $W^{(fc1)}$ the first fully "
        "connected layer's weights, and so on),"
    )
    return network_document(
        nd,
        title="The course LeNet, layer by layer (worked problem 12)",
        problem=problem,
        extra=_vector_section(d) + counts,
    )


# -- the op protocol ---------------------------------------------------------------------------
# the training network's layer → its (weight, bias) in the derivation's names
_KERNEL_PARAMS = {"conv": ("w", "b"), "fc1": ("W1", "b1"), "fc2": ("W2", "b2")}


class LeNet(Op):
    name = "lenet"
    us_per_step = 1300.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "The course LeNet, layer by layer"
    problems = "12"
    slow = True
    params = (
        Param("input", "size", "image size, an int or HxW"),
        Param("kernel", "int", "conv kernel size"),
        Param("filters", "int", "conv filters"),
        Param("hidden", "int", "hidden units of the first fully connected layer"),
        Param("classes", "int", "number of classes"),
        Param("label", "int", "the true class, 1-based"),
    )

    def build(self, **params: Any) -> Derivation:
        return lenet(**params)

    def cost(self, **params: Any) -> int:
        H, W, K, F, hid, k, _ = _sizes(self.name, params)
        HO, WO = output_size(H, K), output_size(W, K)
        nf = F * output_size(HO, 2, 2) * output_size(WO, 2, 2)
        # the loss holds every logit, each every hidden unit, each every pooled window of convs
        terms = k * hid * (nf * 4 * (K * K + 1) + 1)
        symbols = H * W + F * (K * K + 1) + hid * (nf + 1) + k * (hid + 1)
        return symbolic_work(1, terms, symbols, symbols)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The kernels' LeNet on the instance: the network :func:`derivgrad.training.model.lenet`
        builds for these sizes, its layers found by name, its parameters set to ``values``;
        returns (the loss as a 1-element array, the gradients in the derivation's shapes)."""
        from ..training.model import lenet as network

        P = d.params
        H, W = P["input"]
        net = network(
            P["filters"], P["kernel"], P["hidden"], P["classes"], (1, H, W), dtype=np.float64
        )
        net.layer("conv").need_dx = True
        for layer, (w, b) in _KERNEL_PARAMS.items():
            params = net.layer(layer).params
            params["w"] = np.asarray(values[w], np.float64).reshape(params["w"].shape)
            params["b"] = np.asarray(values[b], np.float64).reshape(params["b"].shape)
        x = np.asarray(values["x"], np.float64)[None, None]
        loss, _ = net.loss_and_grads(x, np.array([P["label"] - 1]))
        grads = {}
        for layer, names in _KERNEL_PARAMS.items():
            for key, name in zip(("w", "b"), names):
                grads[name] = net.layer(layer).grads[key].reshape(np.shape(values[name]))
        return np.array([loss]), grads

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.just({})

    def document(self, d: Derivation) -> Doc:
        return lenet_document(d)

    def worked_problems(self) -> list[Problem]:
        from .lenet_homework import homework_document

        return [
            Problem("12", "The course LeNet, layer by layer", params={}),
            Problem("12b", "The LeNet homework at its real size", make=homework_document),
        ]

    def shapes(self, **params: Any) -> str:
        from ..training.model import lenet_rows

        def given(name: str, default: int) -> int:
            v = params.get(name)
            return default if v is None else count("shapes lenet", name, v)

        # from the sizes alone: a huge --hidden is priced, never allocated
        rows = lenet_rows(given("filters", 20), given("kernel", 5), given("hidden", 500))
        lines = [f"{'layer':34s} {'output':>12s} {'params':>11s}"]
        lines.append(f"{'input':34s} {'1x28x28':>12s} {0:>11,d}")
        for name, shape, n in rows:
            lines.append(f"{name:34s} {'x'.join(map(str, shape)):>12s} {n:>11,d}")
        lines.append(f"{'total':34s} {'':>12s} {sum(r.params for r in rows):>11,d}")
        return "\n".join(lines)


OPS = (LeNet(),)
