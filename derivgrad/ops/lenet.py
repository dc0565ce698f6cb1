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
    entries,
    entry_rows,
    indexed,
    rule_tex,
    tex,
    tex_name,
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


def _vector_section(d: Derivation) -> list[tuple[str, Any]]:
    """The notes' forward pass in vector form beside the scalar one, with the check."""
    P, V = d.params, d.extra["display"]
    F, K = P["filters"], P["kernel"]
    HO, WO = d.extra["shapes"]["conv"][1:]
    v = vector_form(d)
    rows, cols = v["rows"], v["cols"]
    W1, b1, W2, b2 = (d.input_arrays[k] for k in ("W1", "b1", "W2", "b2"))
    col = lambda a: bmatrix(a.reshape(-1, 1))  # noqa: E731
    out: list[tuple[str, Any]] = [
        ("h", (2, "Forward pass in vector form")),
        (
            "p",
            r"As in the homework, the convolution is one matrix product. "
            r"$w^{(rows)} = \operatorname{convweight2rows}(w)$ holds each filter flattened "
            rf"as a row ($F \times (C_{{in}} K K) = {F} \times {K * K}$; "
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
    first = v["zhat"][0, 0]
    out += [
        (
            "p",
            r"Then $\hat z = w^{(rows)} x^{(cols)} + b$ (the bias $b_f$ added to every column "
            rf"of row $f$) is ${F} \times {HO * WO}$, and "
            rf"$z = \operatorname{{view}}(\hat z, ({F}, {HO}, {WO}))$: entry $(f, q)$ of "
            r"$\hat z$ is row $f$ of $w^{(rows)}$ times column $q$ of $x^{(cols)}$, the "
            "window at position $q$ (row-major), plus $b_f$. For example",
        ),
        ("eq", [(r"\hat z_{1,1}", tex_split(first))]),
        (
            "p",
            r"which is $z_{1,1,1}$ above. The pooling is "
            r"$m = \max(\operatorname{im2col}(z, K=2, S=2), \text{axis}=\text{rows})$, one "
            "maximum per column (window), and the fully connected layers are matrix-vector "
            "products (the notes write them for a batch of samples as rows, "
            r"$z^{(fc1)} = z^{(flat)} (W^{(1)})^\top + b^{(1)}$; each row of that is the "
            "transpose of the column form for one sample):",
        ),
        (
            "eq",
            [
                (
                    r"h",
                    [r"W^{(1)} f + b^{(1)} = " + bmatrix(W1) + " " + col(V["f"]) + " + " + col(b1)],
                ),
                (
                    r"s",
                    [r"W^{(2)} a + b^{(2)} = " + bmatrix(W2) + " " + col(V["a"]) + " + " + col(b2)],
                ),
                (r"p", [r"\frac{\exp(s)}{\operatorname{sum}(\exp(s))}"]),
            ],
        ),
    ]
    if abbreviated(W1) or abbreviated(W2):
        out.append(("p", ABBREVIATED))
    out.append(
        (
            "p",
            r"derivgrad checked, entry by entry, that $\operatorname{view}(w^{(rows)} x^{(cols)} "
            r"+ b)$, $W^{(1)} f + b^{(1)}$ and $W^{(2)} a + b^{(2)}$ are the scalar forms above "
            "(each difference expanded to zero) when it wrote this section.",
        )
    )
    return out


# -- the document: the network layer by layer ---------------------------------------------
def lenet_document(d: Derivation) -> Doc:
    """The network, layer by layer: forward in scalar form, each δ of the backward pass
    written out, the parameter gradients, and the proof against the chain rule through the
    whole network."""
    doc = Doc()
    P, X = d.params, d.extra
    doc.h("The course LeNet, layer by layer (worked problem 12)")
    sh = X["shapes"]
    doc.p(
        f"Problem. A reduced instance of the homework network: input "
        f"${P['input'][0]}\\times{P['input'][1]}$, "
        f"conv {P['filters']}@${P['kernel']}\\times{P['kernel']}$ with bias → max-pool "
        f"$2\\times2$/2 → flatten "
        f"({sh['flat'][0]}) → fc {P['hidden']} → ReLU → fc {P['classes']} → softmax cross-entropy "
        f"with label "
        f"$y = {P['label']}$. Derive the gradient of $L$ with respect to every parameter."
    )
    doc.h("Forward pass in scalar form", 2)
    V = X["display"]
    conv = [(indexed("z", i), tex_split(e)) for i, e in entries(X["conv"], lambda i: i)]
    doc.p("Convolution (one input channel, so the sum runs over the window only):")
    doc.eq(conv[:8])
    if len(conv) > 8:
        doc.p(f"(and {len(conv) - 8} more entries of the same form).")
    doc.p(
        r"Max pooling $m$, flattening $f = \operatorname{vec}(m)$, the hidden layer $h$, $a = "
        r"\operatorname{relu}(h)$, "
        r"the logits $s$, $p = \operatorname{softmax}(s)$ and $L = -\log p_y$:"
    )
    rows = [(indexed("m", i), [tex(e)]) for i, e in entries(V["pooled"], lambda i: i)]
    rows += [(indexed("h", i), tex_split(e)) for i, e in entries(V["h_expr"], lambda i: i)]
    rows += [(indexed("s", i), tex_split(e)) for i, e in entries(V["s_expr"], lambda i: i)]
    rows += [("L", [r"-\log p_{%d} = -s_{%d} + \log \sum_j e^{s_j}" % (P["label"], P["label"])])]
    doc.eq(rows)
    doc.blocks.extend(_vector_section(d))
    doc.h("Backward pass, layer by layer", 2)
    doc.p(
        r"Each $\delta$ is the gradient of $L$ with respect to that layer's output, from the end "
        r"to the beginning "
        r"(read it in reverse order, as the notes advise):"
    )
    D = V["deltas"]
    names = [
        ("z", r"\delta_{s}", "the logits $s$: $p - e_y$"),
        ("a", r"\delta_{a}", r"$W^{(2)\top} \delta_{s}$"),
        ("h", r"\delta_{h}", r"$\delta_{a} \odot \mathbf{1}[h > 0]$"),
        ("f", r"\delta_{f}", r"$W^{(1)\top} \delta_{h}$, reshaped to the pooled maps"),
        (
            "conv",
            r"\delta_{z}",
            "the convolution's output $z$: each pooled $\\delta$ routed to the first maximum "
            "of its window",
        ),
    ]
    for key, sym, what in names:
        doc.p(f"${sym}$: {what}.")
        rows, note = entry_rows(
            lambda i, sym=sym: sym[:-1] + "," + ",".join(str(k + 1) for k in i) + "}",
            D[key],
            lambda e: e,
            limit=12,
        )
        doc.eq(rows)
        if note:
            doc.p(note)
    doc.h("Parameter gradients", 2)
    for k in d.grad_names:
        doc.p(f"${tex_name(k)}$: {rule_tex(d.rules[k].text)}.")
    doc.h("Parameter counts of the full network", 2)
    doc.p(
        "With the homework's sizes (64×1×28×28 input, 20@5×5, 2×2 pooling, 2880 → 500 → 10): conv "
        "20·25 + 20 = 520, fc1 2880·500 + 500 = 1,440,500, fc2 500·10 + 10 = 5,010; 1,446,030 in "
        "all."
    )
    doc.h("Proof", 2)
    how = (
        "differentiating $L$ directly with respect to every parameter (the chain rule through "
        "the whole network, as SymPy's derivative of one expression) and comparing it with the "
        "layer-by-layer result above, entry by entry, by writing every $e^{a}$ as a positive "
        "symbol and cancelling the difference to zero"
    )
    if d.verified:
        doc.p(f"derivgrad proved the gradients by {how}.")
    else:
        doc.p(
            f"Not verified: the symbolic proof (by {how}) was skipped for this document. Run "
            r"\texttt{d.verify()}, or derive without \texttt{--no-verify}, before relying on it."
        )
    return doc


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
