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

from ..document import Doc, entries, entry_rows, indexed, rule_tex, tex, tex_name, tex_split
from ..symbolic.derivation import Derivation
from ..symbolic.functions import (
    LogSumExp,
    Relu,
    Step,
    WindowMax,
    stable_forms_agree,
    stable_softmax,
)
from ..symbolic.params import ParamError, check_unknown, count, pair
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
    closed = {
        "W2": lambda: np.array(
            [[dz[i] * a[j] for j in range(hid)] for i in range(k)], dtype=object
        ),
        "b2": lambda: dz.copy(),
        "W1": lambda: np.array(
            [[dh[i] * f_[j] for j in range(nf)] for i in range(hid)], dtype=object
        ),
        "b1": lambda: dh.copy(),
        "w": lambda: rule_dw(x[None, None], dconv[None], (K, K), (1, 1), (0, 0), (1, 1))[:, 0],
        "b": lambda: rule_db(dconv[None]),
    }
    rules = {
        "W2": "dW2 = δ_s aᵀ",
        "b2": "db2 = δ_s = p − e_y",
        "W1": "dW1 = δ_h fᵀ",
        "b1": "db1 = δ_h",
        "w": "dWc = X ⋆ δ_z",
        "b": "dbc = Σ δ_z",
    }
    inputs = {"w": Wc, "b": bc, "W1": W1, "b1": b1, "W2": W2, "b2": b2, "x": x}
    der = Derivation(
        op,
        dict(input=(H, W), kernel=K, filters=F, hidden=hid, classes=k, label=y + 1),
        inputs,
        np.array([L], dtype=object),
        np.array([sp.Integer(1)], dtype=object),
        closed,
        rules,
        proof="rational",
        extra=dict(
            lemmas=[
                (
                    "the max-shift log-sum-exp and its derivative equal the plain log Σ e^{z_j}",
                    functools.partial(stable_forms_agree, k),
                )
            ],
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
        doc.p(f"${tex_name(k)}$: {rule_tex(d.rules[k])}.")
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
class LeNet(Op):
    name = "lenet"
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
        from ..model import lenet_loss_and_grads

        return lenet_loss_and_grads(d, values)

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return st.just({})

    def document(self, d: Derivation) -> Doc:
        return lenet_document(d)

    def worked_problems(self) -> list[Problem]:
        return [Problem("12", "The course LeNet, layer by layer", params={})]

    def shapes(self, **params: Any) -> str:
        from ..model import lenet_rows

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
