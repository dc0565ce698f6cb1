r"""The LeNet homework (course file 002) at its real size: 64 images of 1×28×28, conv
20@5×5 → max-pool 2×2/2 → flatten (2880) → fc 500 → ReLU → fc 10 → softmax cross-entropy
averaged over the batch; 1,446,030 parameters.

Worked problem 12 derives this network symbolically on a reduced instance (SymPy cannot
hold 1.4 million parameters).  This module writes the homework's scalar and vector forms of
every layer at the real sizes, in the homework's notation, and checks each numerically at
that size: the scalar forms evaluated entry by entry from their index formulas (the flatten
index map included), the vector forms as the homework's matrix products (im2col,
convweight2rows), both against the network the training runs
(:func:`derivgrad.training.model.lenet`, the kernels), every entry of every array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..documents.document import Doc

N, C_IN, S_IN, K, C_OUT, P1, P2 = 64, 1, 28, 5, 20, 500, 10
S_OUT = S_IN - K + 1  # 24
S_POOL = S_OUT // 2  # 12
D = C_OUT * S_POOL * S_POOL  # 2880
# float64 against float64 summed in another order: round-off, far below any formula's slip
RTOL = 1e-10


def flat_index(c: int, m: int, l: int, side: int = S_POOL) -> int:  # noqa: E741 (its l)
    """The homework's flatten map, 1-based: ``j = (c − 1)·144 + (m − 1)·12 + l`` (``side``
    12: the pooled maps' side)."""
    return (c - 1) * side * side + (m - 1) * side + l


def _batch(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first 64 images of the bundled MNIST subset (pixels / 255) and their labels."""
    from ..training.data import load_embedded

    d = load_embedded()
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(d["train_labels"]), N, replace=False))
    x = d["train_images"][pick].astype(np.float64)[:, None] / 255.0
    return x, d["train_labels"][pick].astype(np.int64)


def kernels(x: np.ndarray, t: np.ndarray, seed: int) -> dict[str, Any]:
    """The network the training runs, in float64, on the batch: loss, logits and gradients."""
    from ..training.model import lenet

    net = lenet(C_OUT, K, P1, P2, (C_IN, S_IN, S_IN), seed=seed, dtype=np.float64)
    params = {
        name: {k: v.copy() for k, v in net.layer(name).params.items()}
        for name in ("conv", "fc1", "fc2")
    }
    logits = net.forward(x, train=True)
    loss, _ = net.loss_and_grads(x, t)
    grads = {name: dict(net.layer(name).grads) for name in ("conv", "fc1", "fc2")}
    return dict(params=params, logits=logits, loss=loss, grads=grads)


def scalar_forms(x: np.ndarray, t: np.ndarray, p: dict[str, dict[str, np.ndarray]]) -> dict:
    """Every layer by its scalar formula: each sum over the summation indices, the pooling
    window's four entries by their indices, the flatten by its index map.  The sizes are
    read from the arrays (the homework's, or worked problem 12's reduced instance)."""
    w, b = p["conv"]["w"], p["conv"]["b"]
    N, C_OUT, K, P2 = x.shape[0], w.shape[0], w.shape[-1], p["fc2"]["w"].shape[0]  # noqa: N806
    S_OUT = x.shape[-1] - K + 1  # noqa: N806
    S_POOL, D = S_OUT // 2, C_OUT * (S_OUT // 2) ** 2  # noqa: N806
    z = np.zeros((N, C_OUT, S_OUT, S_OUT)) + b[None, :, None, None]
    # z_{n,c,m,l} = Σ_{i,j} x_{n,1,m+i−1,l+j−1} w_{c,1,i,j} + b_c
    for i in range(1, K + 1):
        for j in range(1, K + 1):
            patch = x[:, 0, i - 1 : i - 1 + S_OUT, j - 1 : j - 1 + S_OUT]
            z += patch[:, None] * w[None, :, 0, i - 1, j - 1, None, None]
    # z^(pool)_{n,c,i,j} = max(z_{2i−1,2j−1}, z_{2i−1,2j}, z_{2i,2j−1}, z_{2i,2j}), in that
    # order: the first maximum is the one the gradient goes to (the kernels' convention)
    four = np.stack([z[:, :, a::2, c::2] for a, c in ((0, 0), (0, 1), (1, 0), (1, 1))], axis=-1)
    pool = four.max(-1)
    first = four.argmax(-1)
    flat = np.empty((N, D))
    for c in range(1, C_OUT + 1):
        for m in range(1, S_POOL + 1):
            for l in range(1, S_POOL + 1):  # noqa: E741
                flat[:, flat_index(c, m, l, S_POOL) - 1] = pool[:, c - 1, m - 1, l - 1]
    w1, b1, w2, b2 = p["fc1"]["w"], p["fc1"]["b"], p["fc2"]["w"], p["fc2"]["b"]
    fc1 = np.einsum("ji,ni->nj", w1, flat) + b1
    relu = np.maximum(fc1, 0.0)
    fc2 = np.einsum("ji,ni->nj", w2, relu) + b2
    e = np.exp(fc2 - fc2.max(1, keepdims=True))
    y = e / e.sum(1, keepdims=True)
    tt = np.zeros((N, P2))
    tt[np.arange(N), t] = 1.0
    losses = -np.log(y[np.arange(N), t])
    # backward: the batch mean L = (1/N) Σ_n L_n puts 1/N on every sample's δ
    d_fc2 = (y - tt) / N
    g_w2 = np.einsum("nj,ni->ji", d_fc2, relu)
    g_b2 = d_fc2.sum(0)
    d_relu = np.einsum("nj,ji->ni", d_fc2, w2)
    d_fc1 = d_relu * (fc1 > 0)
    g_w1 = np.einsum("nj,ni->ji", d_fc1, flat)
    g_b1 = d_fc1.sum(0)
    d_flat = np.einsum("nj,ji->ni", d_fc1, w1)
    d_pool = np.empty((N, C_OUT, S_POOL, S_POOL))
    for c in range(1, C_OUT + 1):
        for m in range(1, S_POOL + 1):
            for l in range(1, S_POOL + 1):  # noqa: E741
                d_pool[:, c - 1, m - 1, l - 1] = d_flat[:, flat_index(c, m, l, S_POOL) - 1]
    d_conv = np.zeros_like(z)
    for k, (a, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        d_conv[:, :, a::2, c::2] = np.where(first == k, d_pool, 0.0)
    g_w = np.zeros_like(w)
    # ∂L/∂w_{c,1,i,j} = Σ_n Σ_{m,l} δ^(conv)_{n,c,m,l} x_{n,1,m+i−1,l+j−1}
    for i in range(1, K + 1):
        for j in range(1, K + 1):
            patch = x[:, 0, i - 1 : i - 1 + S_OUT, j - 1 : j - 1 + S_OUT]
            g_w[:, 0, i - 1, j - 1] = np.einsum("ncml,nml->c", d_conv, patch)
    g_b = d_conv.sum((0, 2, 3))
    return dict(
        logits=fc2,
        loss=losses.mean(),
        conv=dict(w=g_w, b=g_b),
        fc1=dict(w=g_w1, b=g_b1),
        fc2=dict(w=g_w2, b=g_b2),
        ties=int(np.sum((four == pool[..., None]).sum(-1) > 1)),
        windows=int(pool.size),
    )


def im2col(a: np.ndarray, k: int, s: int) -> np.ndarray:
    """The homework's im2col of a batch ``(N, C, H, W)``: ``(N, C·k·k, positions)``, row
    ``(c, u, v)`` of the window, column the window's position, both row-major."""
    n, c, h, w = a.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    cols = np.empty((n, c, k, k, ho, wo))
    for u in range(k):
        for v in range(k):
            cols[:, :, u, v] = a[:, :, u : u + s * (ho - 1) + 1 : s, v : v + s * (wo - 1) + 1 : s]
    return cols.reshape(n, c * k * k, ho * wo)


def vector_forms(x: np.ndarray, t: np.ndarray, p: dict[str, dict[str, np.ndarray]]) -> dict:
    """The homework's vector forms, batch as rows: matrix products throughout."""
    w, b = p["conv"]["w"], p["conv"]["b"]
    w_rows = w.reshape(C_OUT, -1)  # convweight2rows: 20 × 25
    x_cols = im2col(x, K, 1)  # 64 × 25 × 576
    z_hat = w_rows @ x_cols + b[:, None]  # 64 × 20 × 576
    z = z_hat.reshape(N, C_OUT, S_OUT, S_OUT)
    z_cols = im2col(z.reshape(N * C_OUT, 1, S_OUT, S_OUT), 2, 2)  # (64·20) × 4 × 144
    pool = z_cols.max(1).reshape(N, C_OUT, S_POOL, S_POOL)
    F = pool.reshape(N, D)
    W1, b1, W2, b2 = p["fc1"]["w"], p["fc1"]["b"], p["fc2"]["w"], p["fc2"]["b"]
    H = F @ W1.T + b1
    A = np.maximum(H, 0.0)
    S = A @ W2.T + b2
    E = np.exp(S - S.max(1, keepdims=True))
    Y = E / E.sum(1, keepdims=True)
    T = np.eye(P2)[t]
    dS = (Y - T) / N
    dH = (dS @ W2) * (H > 0)
    dF = dH @ W1
    dP = dF.reshape(N * C_OUT, S_POOL * S_POOL)
    # route each window's δ to its first maximum: a one-hot column per window, scattered back
    pick = np.zeros_like(z_cols)
    np.put_along_axis(pick, z_cols.argmax(1)[:, None], 1.0, axis=1)
    dZ_cols = pick * dP[:, None, :]
    dZ = np.zeros((N * C_OUT, S_OUT, S_OUT))
    for u in range(2):
        for v in range(2):
            dZ[:, u::2, v::2] = dZ_cols[:, u * 2 + v].reshape(-1, S_POOL, S_POOL)
    dZ_hat = dZ.reshape(N, C_OUT, S_OUT * S_OUT)
    dw_rows = np.einsum("nfq,nrq->fr", dZ_hat, x_cols)  # Σ_n δẑ_n (x^(cols)_n)ᵀ
    return dict(
        logits=S,
        loss=float(-np.log(Y[np.arange(N), t]).mean()),
        conv=dict(w=dw_rows.reshape(w.shape), b=dZ_hat.sum((0, 2))),
        fc1=dict(w=dH.T @ F, b=dH.sum(0)),
        fc2=dict(w=dS.T @ A, b=dS.sum(0)),
    )


def _rel(a: Any, ref: Any) -> float:
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(a - ref)) / max(float(np.max(np.abs(ref))), 1e-300))


def check(seed: int = 0) -> dict[str, Any]:
    """Every array of the scalar and the vector forms against the kernels: ``{name: (rel.
    difference of the scalar form, of the vector form)}``, plus what the document states."""
    x, t = _batch(seed)
    k = kernels(x, t, seed)
    s = scalar_forms(x, t, k["params"])
    v = vector_forms(x, t, k["params"])
    rows: dict[str, tuple[float, float]] = {
        "logits": (_rel(s["logits"], k["logits"]), _rel(v["logits"], k["logits"])),
        "loss": (_rel(s["loss"], k["loss"]), _rel(v["loss"], k["loss"])),
    }
    for layer in ("conv", "fc1", "fc2"):
        for p in ("w", "b"):
            ref = k["grads"][layer][p]
            rows[f"{layer}.{p}"] = (_rel(s[layer][p], ref), _rel(v[layer][p], ref))
    sizes = {f"{n}.{p}": k["params"][n][p].size for n in k["params"] for p in ("w", "b")}
    return dict(
        rows=rows, loss=k["loss"], ties=s["ties"], windows=s["windows"], sizes=sizes, labels=t
    )


# -- the document ------------------------------------------------------------------------------
_GRAD = {
    "conv.w": r"\partial L / \partial w^{(conv)}",
    "conv.b": r"\partial L / \partial b^{(conv)}",
    "fc1.w": r"\partial L / \partial w^{(fc1)}",
    "fc1.b": r"\partial L / \partial b^{(fc1)}",
    "fc2.w": r"\partial L / \partial w^{(fc2)}",
    "fc2.b": r"\partial L / \partial b^{(fc2)}",
    "logits": r"z^{(fc2)}",
    "loss": "L",
}


def homework_document(seed: int = 0) -> Doc:
    """Worked problem 12b: the homework's network at its real size, every layer's scalar and
    vector forms with the batch, each checked against the kernels at that size."""
    r = check(seed)
    sizes = r["sizes"]
    total = sum(sizes.values())
    doc = Doc()
    doc.h("The LeNet homework at its real size")
    doc.p(
        r"Problem. The homework's network (file 002) with its sizes: input $\mathbf{x}$ of "
        r"$[N_{batch} \times C_{in} \times S_{in} \times S_{in}] = [64 \times 1 \times 28 "
        r"\times 28]$, a convolution $20@5 \times 5$ with bias ($S_{out} = 28 - 5 + 1 = 24$), "
        r"max pooling $2 \times 2$ with stride 2, flatten to $D = 20 \cdot 12 \cdot 12 = 2880$, "
        r"a fully connected layer of $P_1 = 500$, ReLU, a fully connected layer of $P_2 = 10$ "
        r"and the softmax with the cross-entropy loss averaged over the batch. Learnable "
        f"parameters: {sizes['conv.w']} + {sizes['conv.b']} = "
        f"{sizes['conv.w'] + sizes['conv.b']:,} (conv), {sizes['fc1.w']:,} + {sizes['fc1.b']} "
        f"= {sizes['fc1.w'] + sizes['fc1.b']:,} (fc1), {sizes['fc2.w']:,} + "
        f"{sizes['fc2.b']} = {sizes['fc2.w'] + sizes['fc2.b']:,} (fc2); {total:,} in all. "
        "Worked problem 12 proves these rules symbolically on a reduced instance; here every "
        "layer is written at the real sizes in the homework's notation ($t$ the one-hot "
        r"label, $\mathbf{1}_+(x) = 1$ for $x > 0$ and 0 otherwise, indices 1-based) and "
        "checked numerically at that size."
    )
    doc.h("Forward pass, scalar form", 2)
    doc.eq(
        [
            (
                r"z^{(conv)}_{n,c,m,l}",
                [
                    r"\sum_{i=1}^{5} \sum_{j=1}^{5} x_{n,1,m+i-1,l+j-1}\, w^{(conv)}_{c,1,i,j} "
                    r"+ b^{(conv)}_{c}",
                ],
            ),
            (
                r"z^{(pool)}_{n,c,i,j}",
                [
                    r"\max\big(z^{(conv)}_{n,c,2i-1,2j-1}, z^{(conv)}_{n,c,2i-1,2j}, "
                    r"z^{(conv)}_{n,c,2i,2j-1}, z^{(conv)}_{n,c,2i,2j}\big)"
                ],
            ),
            (
                r"z^{(flat)}_{n,j}",
                [r"z^{(pool)}_{n,c,m,l}, \quad j = (c-1) \cdot 144 + (m-1) \cdot 12 + l"],
            ),
            (
                r"z^{(fc1)}_{n,j}",
                [r"\sum_{i=1}^{2880} w^{(fc1)}_{j,i}\, z^{(flat)}_{n,i} + b^{(fc1)}_{j}"],
            ),
            (r"z^{(relu)}_{n,j}", [r"\max(z^{(fc1)}_{n,j}, 0)"]),
            (
                r"z^{(fc2)}_{n,j}",
                [r"\sum_{i=1}^{500} w^{(fc2)}_{j,i}\, z^{(relu)}_{n,i} + b^{(fc2)}_{j}"],
            ),
            (r"y_{n,j}", [r"\exp(z^{(fc2)}_{n,j}) \big/ \sum_{i=1}^{10} \exp(z^{(fc2)}_{n,i})"]),
            (
                r"L",
                [
                    r"\frac{1}{64} \sum_{n=1}^{64} L_n, \quad L_n = -\sum_{j=1}^{10} t_{n,j} "
                    r"\log y_{n,j}"
                ],
            ),
        ]
    )
    doc.p(
        r"for $n = 1, \dots, 64$; conv: $c = 1, \dots, 20$, $m, l = 1, \dots, 24$; pool: "
        r"$i, j = 1, \dots, 12$; fc1: $j = 1, \dots, 500$; fc2 and $y$: $j = 1, \dots, 10$."
    )
    doc.h("The flatten index map", 2)
    doc.p(
        r"Entry $(c, m, l)$ of one sample's pooled maps ($c = 1, \dots, 20$; $m, l = 1, "
        r"\dots, 12$) is entry $j = (c-1) \cdot 144 + (m-1) \cdot 12 + l$ of $z^{(flat)}$, "
        r"row-major: $l$ runs fastest. Its inverse: $c = \lfloor (j-1)/144 \rfloor + 1$, "
        r"$m = \lfloor ((j-1) \operatorname{mod} 144)/12 \rfloor + 1$, "
        r"$l = (j-1) \operatorname{mod} 12 + 1$. For "
        f"example $(1, 1, 1) \\mapsto {flat_index(1, 1, 1)}$, $(1, 1, 12) \\mapsto "
        f"{flat_index(1, 1, 12)}$, $(1, 2, 1) \\mapsto {flat_index(1, 2, 1)}$, $(2, 1, 1) "
        f"\\mapsto {flat_index(2, 1, 1)}$ and $(20, 12, 12) \\mapsto {flat_index(20, 12, 12)}$. "
        r"The backward pass reads it the other way: $\delta^{(pool)}_{n,c,m,l} = "
        r"\delta^{(flat)}_{n,(c-1) \cdot 144 + (m-1) \cdot 12 + l}$."
    )
    doc.h("Forward pass, vector form (batch as rows)", 2)
    doc.eq(
        [
            (
                r"w^{(conv,rows)}",
                [r"\operatorname{convweight2rows}(w^{(conv)}) \in \mathbb{R}^{20 \times 25}"],
            ),
            (
                r"x^{(cols)}_n",
                [r"\operatorname{im2col}(x_n, K = 5, S = 1) \in \mathbb{R}^{25 \times 576}"],
            ),
            (
                r"z^{(conv)}_n",
                [
                    r"\operatorname{view}\big(w^{(conv,rows)} x^{(cols)}_n + b^{(conv)} "
                    r"\mathbf{1}^\top, (20, 24, 24)\big)"
                ],
            ),
            (
                r"z^{(pool)}_n",
                [
                    r"\operatorname{view}\big(\max(\operatorname{im2col}(z^{(conv)}_n, K = 2, "
                    r"S = 2), \text{axis} = \text{rows}), (20, 12, 12)\big)"
                ],
            ),
            (r"Z^{(flat)}", [r"\operatorname{reshape}(z^{(pool)}, (64, 2880))"]),
            (
                r"Z^{(fc1)}",
                [
                    r"Z^{(flat)} (w^{(fc1)})^\top + \mathbf{1} (b^{(fc1)})^\top \in "
                    r"\mathbb{R}^{64 \times 500}"
                ],
            ),
            (r"Z^{(relu)}", [r"\max(Z^{(fc1)}, 0)"]),
            (
                r"Z^{(fc2)}",
                [
                    r"Z^{(relu)} (w^{(fc2)})^\top + \mathbf{1} (b^{(fc2)})^\top \in "
                    r"\mathbb{R}^{64 \times 10}"
                ],
            ),
            (r"Y", [r"\exp(Z^{(fc2)}) / \operatorname{sum}(\exp(Z^{(fc2)}), \text{axis} = 1)"]),
        ]
    )
    doc.h("Backward pass, scalar form, with the batch mean", 2)
    doc.p(
        r"The homework writes one sample's $\delta^{(fc2)}_j = y_j - t_j$. The loss the "
        r"network trains with is the batch mean $L = \frac{1}{64} \sum_n L_n$, so every "
        r"sample's $\delta$ carries $\frac{1}{64}$, and every parameter's gradient sums over "
        "the 64 samples:"
    )
    doc.eq(
        [
            (r"\delta^{(fc2)}_{n,j}", [r"\frac{1}{64} (y_{n,j} - t_{n,j})"]),
            (
                r"\frac{\partial L}{\partial w^{(fc2)}_{j,i}}",
                [
                    r"\sum_{n=1}^{64} \delta^{(fc2)}_{n,j}\, z^{(relu)}_{n,i}, \quad "
                    r"\frac{\partial L}{\partial b^{(fc2)}_{j}} = \sum_{n=1}^{64} "
                    r"\delta^{(fc2)}_{n,j}"
                ],
            ),
            (r"\delta^{(relu)}_{n,i}", [r"\sum_{j=1}^{10} \delta^{(fc2)}_{n,j}\, w^{(fc2)}_{j,i}"]),
            (r"\delta^{(fc1)}_{n,i}", [r"\delta^{(relu)}_{n,i}\, \mathbf{1}_+(z^{(fc1)}_{n,i})"]),
            (
                r"\frac{\partial L}{\partial w^{(fc1)}_{i,k}}",
                [
                    r"\sum_{n=1}^{64} \delta^{(fc1)}_{n,i}\, z^{(flat)}_{n,k}, \quad "
                    r"\frac{\partial L}{\partial b^{(fc1)}_{i}} = \sum_{n=1}^{64} "
                    r"\delta^{(fc1)}_{n,i}"
                ],
            ),
            (
                r"\delta^{(flat)}_{n,k}",
                [r"\sum_{i=1}^{500} \delta^{(fc1)}_{n,i}\, w^{(fc1)}_{i,k}"],
            ),
            (
                r"\delta^{(pool)}_{n,c,m,l}",
                [r"\delta^{(flat)}_{n,(c-1) \cdot 144 + (m-1) \cdot 12 + l}"],
            ),
            (
                r"\delta^{(conv)}_{n,c,p,s}",
                [
                    r"\delta^{(pool)}_{n,c,\lceil p/2 \rceil,\lceil s/2 \rceil} \text{ if } "
                    r"(p, s) \text{ is the first maximum of its window, else } 0"
                ],
            ),
            (
                r"\frac{\partial L}{\partial w^{(conv)}_{c,1,q,r}}",
                [
                    r"\sum_{n=1}^{64} \sum_{p=1}^{24} \sum_{s=1}^{24} "
                    r"\delta^{(conv)}_{n,c,p,s}\, x_{n,1,p+q-1,s+r-1}"
                ],
            ),
            (
                r"\frac{\partial L}{\partial b^{(conv)}_{c}}",
                [r"\sum_{n=1}^{64} \sum_{p=1}^{24} \sum_{s=1}^{24} \delta^{(conv)}_{n,c,p,s}"],
            ),
        ]
    )
    doc.p(
        "A window's first maximum is the first of its four entries in the order of the "
        r"forward formula ($(2i-1, 2j-1)$, $(2i-1, 2j)$, $(2i, 2j-1)$, $(2i, 2j)$) that equals "
        "the maximum: a convention where entries tie (the maximum is not differentiable "
        "there), the kernels' and worked problem 10's. In the batch of the check below, "
        f"{r['ties']:,} of the {r['windows']:,} pooling windows have tied maxima (much of "
        r"it the images' zero background); each such window's $\delta$ goes to its first "
        "maximum, as in the kernels."
    )
    doc.h("Backward pass, vector form", 2)
    doc.eq(
        [
            (r"\Delta^{(fc2)}", [r"\frac{1}{64} (Y - T) \in \mathbb{R}^{64 \times 10}"]),
            (
                r"\frac{\partial L}{\partial w^{(fc2)}}",
                [
                    r"(\Delta^{(fc2)})^\top Z^{(relu)}, \quad \frac{\partial L}{\partial "
                    r"b^{(fc2)}} = (\Delta^{(fc2)})^\top \mathbf{1}"
                ],
            ),
            (
                r"\Delta^{(fc1)}",
                [r"\big(\Delta^{(fc2)} w^{(fc2)}\big) \odot \mathbf{1}_+(Z^{(fc1)})"],
            ),
            (
                r"\frac{\partial L}{\partial w^{(fc1)}}",
                [
                    r"(\Delta^{(fc1)})^\top Z^{(flat)} \in \mathbb{R}^{500 \times 2880}, "
                    r"\quad \frac{\partial L}{\partial b^{(fc1)}} = (\Delta^{(fc1)})^\top "
                    r"\mathbf{1}"
                ],
            ),
            (
                r"\Delta^{(flat)}",
                [
                    r"\Delta^{(fc1)} w^{(fc1)}, \quad \delta^{(pool)} = "
                    r"\operatorname{reshape}(\Delta^{(flat)}, (64, 20, 12, 12))"
                ],
            ),
            (
                r"\delta^{(conv)}",
                [r"\text{each window's } \delta^{(pool)} \text{ at its first maximum}"],
            ),
            (
                r"\frac{\partial L}{\partial w^{(conv,rows)}}",
                [
                    r"\sum_{n=1}^{64} \hat\delta^{(conv)}_n (x^{(cols)}_n)^\top \in "
                    r"\mathbb{R}^{20 \times 25}, \quad \frac{\partial L}{\partial b^{(conv)}} "
                    r"= \sum_{n=1}^{64} \hat\delta^{(conv)}_n \mathbf{1}"
                ],
            ),
        ]
    )
    doc.p(r"with $\hat\delta^{(conv)}_n = \operatorname{view}(\delta^{(conv)}_n, (20, 576))$.")
    doc.h("Checked against the kernels at the real size", 2)
    worst = max(max(v) for v in r["rows"].values())
    doc.p(
        f"On {N} images of the bundled MNIST subset (drawn with seed {seed}, pixels / 255) "
        "and the training's initialisation, derivgrad evaluated every formula above at the "
        "real sizes in float64: the scalar forms entry by entry from their indices (the "
        "sums as loops over their summation indices, the pooling windows by their four "
        "indices, the flatten by its index map), the vector forms as the matrix products "
        "written, and compared both with the network the training runs "
        "(derivgrad.training.model.lenet, the kernels), every entry of the logits, the loss "
        f"($L = {r['loss']:.6f}$) and all {total:,} parameter gradients. The largest "
        "difference relative to the array's largest entry: "
        + (
            f"below {RTOL:g} for every array (round-off: the same sums in another order)."
            if worst < RTOL
            else f"{worst:.3g}, ABOVE {RTOL:g}: a form and the kernels DIFFER."
        )
    )
    lines = [
        f"${_GRAD[k]}$: scalar form {'agrees' if a < RTOL else 'DIFFERS'}, vector form "
        f"{'agrees' if b < RTOL else 'DIFFERS'}"
        for k, (a, b) in r["rows"].items()
    ]
    doc.p("; ".join(lines) + ".")
    doc.p(
        f"Left out: the numbers themselves ({N} images, {total:,} parameters and as many "
        "gradient entries); the check above compares all of them."
    )
    return doc
