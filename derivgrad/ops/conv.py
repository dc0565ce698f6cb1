r"""Symbolic convolution (worked problems 5-9).

Forward (cross-correlation, channels c, filters o, batch n):

.. math:: y_{n,o,i,j} = b_o + \sum_{c,h,l} w_{o,c,h,l}\, x^{pad}_{n,c,\,i s + h d,\,j s + l d}

Compact rules, stated once as expression trees in ``conv_rule.py`` (for any stride s,
padding p and dilation d; r rows past the last window when s does not divide
``n + 2p - d(k-1) - 1``), evaluated by the closed form so that ``verify()`` proves them:

* ``dX = crop_p(pad_{d(k-1), d(k-1)+r}(dilate_s(dY)) ⋆ rot180(dilate_d(W)))``, summed over
  filters.  For s = d = 1, p = 0 it is the course's ``dX = pad(dY, f-1) ⋆ rot180(W)``.
* ``dW = pad_{p, p-r}(X) ⋆_d dilate_s(dY)`` (correlation at stride d), summed over the batch.
* ``db = Σ dY`` over batch and positions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from derivgrad import kernels as K
from derivgrad.kernels import output_size

from ..documents.document import (
    MAX_MATRIX_SIDE,
    Block,
    Doc,
    abbreviated,
    block_matrix,
    bmatrix,
    indexed,
    tex,
    tex_split,
)
from ..symbolic import index_rules as IR
from ..symbolic.derivation import Derivation, Rule
from ..symbolic.index_rules import conv2d_rules
from ..symbolic.params import ParamError, check_unknown, count, pair
from ..symbolic.proofs import Expand
from ..symbolic.shapes import conv_layer, symbolic_output_size
from ..symbolic.tensors import correlate, pad, plus, symbols, zeros
from .base import Op, Param, Problem
from .conv_rule import Geometry, general_rules, per_axis
from .conv_rule import rules as conv_rules

_GEOMETRY = (
    Param("input", "size", "input size, an int or HxW"),
    Param("kernel", "size", "kernel size, an int or KHxKW"),
    Param("stride", "size", "stride, an int or SHxSW"),
    Param("padding", "size", "zero padding on each side, an int or PHxPW"),
    Param("dilation", "size", "spacing between kernel taps, an int or DHxDW"),
    Param("channels", "int", "input channels"),
    Param("filters", "int", "output channels (filters)"),
    Param("batch", "int", "samples in the batch"),
    Param("bias", "bool", "add a bias per filter"),
)
PARAMS = tuple(p.name for p in _GEOMETRY)


def _squeeze(shape, keep):
    return tuple(n for n, k in zip(shape, keep) if k)


@dataclass(frozen=True)
class ConvGeometry:
    """A convolution's validated parameters: sizes per spatial axis (``size``, ``kernel``,
    ``stride``, ``padding``, ``dilation``, ``out``), batch ``N``, channels ``C``, filters ``O``."""

    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out: tuple[int, ...]
    N: int
    C: int
    O: int
    bias: bool

    def params(self) -> dict[str, Any]:
        return dict(
            input=self.size,
            kernel=self.kernel,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            channels=self.C,
            filters=self.O,
            batch=self.N,
            bias=self.bias,
        )


def conv_geometry(op: str, params: Mapping[str, Any], ndim: int) -> ConvGeometry:
    """Parse and check ``params`` (the command line's names, with the notes' defaults: a 3×3
    input and a 2×2 filter in 2-D, x ∈ R⁴ and w ∈ R³ in 1-D); raises ``ParamError``."""
    check_unknown(op, params, PARAMS)

    def axes(name: str, default: Any, minimum: int) -> tuple[int, ...]:
        if ndim == 2:
            return pair(op, name, params.get(name, default), minimum)
        return (count(op, name, _scalar(params.get(name, default)), minimum),)

    size = axes("input", (3, 3) if ndim == 2 else 4, 1)
    ks = axes("kernel", (2, 2) if ndim == 2 else 3, 1)
    s, p, d = axes("stride", 1, 1), axes("padding", 0, 0), axes("dilation", 1, 1)
    bias = params.get("bias", True)
    if isinstance(bias, str):
        bias = bias.lower() not in ("0", "false", "no")
    outs = tuple(output_size(n, k, st, pp, dd) for n, k, st, pp, dd in zip(size, ks, s, p, d))
    if min(outs) < 1:
        raise ParamError(
            f"{op}: a {'x'.join(map(str, ks))} kernel (dilation {d}) does not fit a "
            f"{'x'.join(map(str, size))} input with padding {p}; output size would be {outs}"
        )
    g = ConvGeometry(
        size,
        ks,
        s,
        p,
        d,
        outs,
        N=count(op, "batch", params.get("batch", 1)),
        C=count(op, "channels", params.get("channels", 1)),
        O=count(op, "filters", params.get("filters", 1)),
        bias=bool(bias),
    )
    return g  # its size is checked by the one guard, from _Conv.cost


def conv_nd(op: str, params: Mapping[str, Any], ndim: int) -> Derivation:
    """The convolution's derivation: forward by correlating the padded symbolic input, the
    compact rules ``rule_dx``, ``rule_dw``, ``rule_db`` as the closed form."""
    g = conv_geometry(op, params, ndim)
    N, C, O, size, ks, s, p, d = g.N, g.C, g.O, g.size, g.kernel, g.stride, g.padding, g.dilation
    # symbol tensors: singleton batch/channel/filter axes are left out, as the notes do
    xs = symbols("x", _squeeze((N, C) + size, (N > 1, C > 1) + (True,) * ndim))
    ws = symbols("w", _squeeze((O, C) + ks, (O > 1, C > 1) + (True,) * ndim))
    x = xs.reshape((N, C) + size)
    w = ws.reshape((O, C) + ks)
    pads = [(q, q) for q in p]
    y = np.stack([correlate(pad(x[n], pads), w, s, d) for n in range(N)])
    y_shape = _squeeze((N, O) + g.out, (N > 1, O > 1) + (True,) * ndim)
    ds = symbols("d", y_shape, latex=r"\delta")
    dy = ds.reshape((N, O) + g.out)
    inputs = {"x": xs, "w": ws}
    rules = {
        "x": Rule(
            f"dX = crop_p(pad(dilate_s(dY)) ⋆ {'rot180' if ndim == 2 else 'flip'}(dilate_d(W))), "
            "summed over filters, with q zeros before and q + r after, q = d(f − 1) and r the "
            "rows past the last window",
            lambda: rule_dx(dy, w, size, ks, s, p, d).reshape(xs.shape),
        ),
        "w": Rule(
            "dW = pad_p(X) ⋆_d dilate_s(dY), the correlation at stride d, without the last r "
            "rows of the padded X, summed over the batch",
            lambda: rule_dw(x, dy, ks, s, p, d).reshape(ws.shape),
        ),
    }
    if g.bias:
        bs = symbols("b", (O,))
        for idx in np.ndindex(*y.shape):
            y[idx] = plus(y[idx], bs[idx[1]])
        inputs["b"] = bs
        rules["b"] = Rule("db = Σ dY, summed over batch and positions", lambda: rule_db(dy))
    extra = dict(x_full=x, w_full=w, out_size=g.out)
    return Derivation(
        op=op,
        params=g.params(),
        inputs=inputs,
        output=y.reshape(y_shape),
        upstream=ds,
        rules=rules,
        proof=Expand(),
        extra=extra,
    )


def rule_dx(
    dy: np.ndarray,
    w: np.ndarray,
    size: tuple[int, ...],
    ks: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
    d: tuple[int, ...],
) -> np.ndarray:
    """``dX (N, C, *size)`` from ``dy (N, O, *out)`` and ``w (O, C, *ks)``: the printed rule
    (:func:`conv_rule.rules`) for each sample, channel and filter, summed over filters."""
    rule = conv_rules(Geometry(size, ks, s, p, d))["x"].expr
    N, C = dy.shape[0], w.shape[1]
    out = zeros((N, C) + tuple(size))
    for n in range(N):
        for c in range(C):
            # the filters as the leading axis of summands: the rule summed over them
            out[n, c] = rule.evaluate(dict(delta=dy[n], w=w[:, c]))
    return out


def rule_dw(
    x: np.ndarray,
    dy: np.ndarray,
    ks: tuple[int, ...],
    s: tuple[int, ...],
    p: tuple[int, ...],
    d: tuple[int, ...],
) -> np.ndarray:
    """``dW (O, C, *ks)``: the printed rule for each sample, channel and filter, summed over
    the batch."""
    size = x.shape[2:]
    rule = conv_rules(Geometry(size, ks, s, p, d))["w"].expr
    O, C = dy.shape[1], x.shape[1]
    g = zeros((O, C) + tuple(ks))
    for o in range(O):
        for c in range(C):
            # the samples as the leading axis of summands: the rule summed over the batch
            g[o, c] = rule.evaluate(dict(x=x[:, c], delta=dy[:, o]))
    return g


def rule_db(dy: np.ndarray) -> np.ndarray:
    """``db[o] = Σ_{n, positions} dY[n, o]``."""
    return np.array([sp.Add(*dy[:, o].reshape(-1)) for o in range(dy.shape[1])], dtype=object)


def _scalar(v):
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ParamError(f"conv1d: expected a single number, got {v!r}")
        return v[0]
    return v


def conv2d(**params: Any) -> Derivation:
    return conv_nd("conv2d", params, 2)


def conv1d(**params: Any) -> Derivation:
    return conv_nd("conv1d", params, 1)


def conv_matrix(der: Derivation) -> sp.Matrix:
    r"""The matrix ``M`` of the linear map ``vec(x_pad) ↦ vec(x_pad ⋆ w)`` (bias left out),
    rows ``(n, o, i...)`` of the output, columns ``(n, c, i...)`` of the *padded* input,
    row-major.  For worked problem 5 (x ∈ R⁴ padded by 1 to R⁶, w ∈ R³) it is the 4×6
    banded Toeplitz matrix with rows ``[w1 w2 w3 0 0 0]`` shifted by one.

    Built by correlating a tensor of fresh symbols for the padded input and reading off the
    coefficients; ``conv_matrix_proves_input_gradient`` shows ``Mᵀ δ`` cropped is dX.
    """
    x = der.extra["x_full"]
    w = der.extra["w_full"]
    p = der.params["padding"]
    s, d = der.params["stride"], der.params["dilation"]
    N = x.shape[0]
    xp_shape = x.shape[:2] + tuple(n + 2 * q for n, q in zip(x.shape[2:], p))
    u = symbols("u", xp_shape)
    y = np.stack([correlate(u[n], w, s, d) for n in range(N)])
    cols = list(u.reshape(-1))
    rows = list(y.reshape(-1))
    return sp.Matrix(len(rows), len(cols), lambda i, j: rows[i].coeff(cols[j]))


def conv_matrix_proves_input_gradient(der: Derivation) -> bool:
    """``crop_p(Mᵀ vec(δ)) == chain rule dX`` entry by entry (expand to 0); returns True."""
    M = conv_matrix(der)
    delta = sp.Matrix(list(der.upstream_array.reshape(-1)))
    g = M.T * delta
    x = der.extra["x_full"]
    p = der.params["padding"]
    xp_shape = x.shape[:2] + tuple(n + 2 * q for n, q in zip(x.shape[2:], p))
    g = np.array(list(g), dtype=object).reshape(xp_shape)
    g = g[(slice(None), slice(None)) + tuple(slice(q, q + n) for q, n in zip(p, x.shape[2:]))]
    chain = der.chain_array("x").reshape(g.shape)
    for a, b in zip(g.reshape(-1), chain.reshape(-1)):
        if sp.expand(a - b) != 0:
            raise AssertionError(f"{der.op}: Mᵀδ entry {a} != chain rule {b}")
    return True


def input_matrix(der: Derivation) -> np.ndarray:
    """``T`` (an object array) with ``vec(y) = T vec(x) + bias``: one row per output entry, one
    column per input entry, both in the derivation's row-major order (batch, channel, row,
    column; singleton axes left out).  Read off the forward pass's terms ``w·x`` (a bias
    term holds no ``x``), for any stride, padding, dilation, channels, filters and batch."""
    x = list(der.input_arrays["x"].reshape(-1))
    col = {v: j for j, v in enumerate(x)}
    y = list(der.output_array.reshape(-1))
    T = np.full((len(y), len(x)), sp.Integer(0), dtype=object)
    for r, e in enumerate(y):
        for term in sp.Add.make_args(sp.expand(e)):
            hit = [v for v in term.free_symbols if v in col]
            if hit:
                (v,) = hit  # the forward is linear in x: one input per term
                T[r, col[v]] += term / v
    return T


def input_matrix_identities_hold(der: Derivation, T: np.ndarray) -> bool:
    """``T vec(x) + b = vec(y)`` and ``Tᵀ vec(δ) = vec(∂L/∂x)`` (the closed form), entry by
    entry, each difference expanded to zero; raises ``AssertionError`` naming the entry."""
    x = der.input_arrays["x"].reshape(-1)
    y = der.output_array.reshape(-1)
    full = (der.params["batch"], der.params["filters"]) + tuple(der.extra["out_size"])
    if "b" in der.input_arrays:
        b = der.input_arrays["b"].reshape((1, -1) + (1,) * (len(full) - 2))
        bias = np.broadcast_to(b, full).reshape(-1)
    else:
        bias = np.zeros(len(y), dtype=int)
    for r in range(len(y)):
        if sp.expand(y[r] - sp.Add(*(T[r] * x)) - bias[r]) != 0:
            raise AssertionError(f"{der.op}: row {r + 1} of T vec(x) is not the forward pass")
    delta = der.upstream_array.reshape(-1)
    dx = der.grad_array("x").reshape(-1)
    for c in range(len(x)):
        if sp.expand(sp.Add(*(T[:, c] * delta)) - dx[c]) != 0:
            raise AssertionError(f"{der.op}: entry {c + 1} of T^T vec(delta) is not dL/dx")
    return True


def _blocks_tex(T: np.ndarray, out: tuple[int, ...], size: tuple[int, ...]) -> str:
    """A 2-D convolution's ``T`` drawn doubly blocked: block ``(i, a)`` maps input row ``a`` to
    output row ``i`` (a banded matrix over the columns); an all-zero block prints as 0."""
    rows = []
    for i in range(out[0]):
        cells = []
        for a in range(size[0]):
            blk = T[i * out[1] : (i + 1) * out[1], a * size[1] : (a + 1) * size[1]]
            cells.append(r"\mathbf{0}" if all(e == 0 for e in blk.reshape(-1)) else bmatrix(blk))
        rows.append(cells)
    return block_matrix(rows)


WIDE_SIDE = 10  # columns of T printed before ⋯ when its entries are short (w_{i,j})


def matrix_side(T: np.ndarray) -> int:
    """Rows and columns of ``T`` printed before ⋯: more when its entries are short (a filter
    with two indices) than when they are long (four: filters and channels)."""
    longest = max(len(tex(e)) for e in T.reshape(-1))
    return WIDE_SIDE if longest <= 10 else MAX_MATRIX_SIDE


def _input_matrix_section(d: Derivation) -> list[Block]:
    """Convolution as a matrix, for any configuration: ``vec(y) = T vec(x) (+ b)``, ``T``
    doubly blocked in 2-D, and the gradient ``Tᵀ vec(δ)``, both checked entry by entry."""
    T = input_matrix(d)
    input_matrix_identities_hold(d, T)
    P = d.params
    size, out = tuple(P["input"]), tuple(d.extra["out_size"])
    single = (P["batch"], P["channels"], P["filters"]) == (1, 1, 1)
    side = matrix_side(T)
    order = (
        "row by row"
        if single
        else "in row-major order ("
        + ", ".join(n for n, k in (("sample", P["batch"]), ("channel", P["channels"])) if k > 1)
        + ", row, column)"
    )
    if len(size) == 1:
        order = "in order" if single else order.replace(", row, column", ", position")
    bias = r" + b" if "b" in d.input_arrays else ""
    blocks: list[Block] = [
        ("h", (2, "Convolution as a matrix")),
        (
            "p",
            f"The convolution is linear in its input. Stack the entries of $x$ {order} into "
            r"$\operatorname{vec}(x)$ and those of $y$ the same way into $\operatorname{vec}(y)$: "
            rf"then $\operatorname{{vec}}(y) = T \operatorname{{vec}}(x){bias}$"
            + (" (each output plus its filter's bias)" if bias else "")
            + f", where $T$ ({T.shape[0]}×{T.shape[1]}) has one row per output and one column "
            "per input; row $r$ holds the weight that output $r$ applies to each input, and 0 "
            "where its window does not reach (the zero padding, the stride and the dilation "
            "are all in the pattern of zeros).",
        ),
    ]
    drawn = len(size) == 2 and single and math.prod(size) <= 12 and side == WIDE_SIDE
    if drawn:
        blocks.append(
            (
                "p",
                "In 2-D, $T$ is doubly blocked, and it is drawn that way below: the block at "
                "$(i, a)$ maps input row $a$ to output row $i$, and is itself a banded (Toeplitz) "
                r"matrix over the columns; $\mathbf{0}$ is a block of zeros.",
            )
        )
        blocks.append(("eq", [("T", [_blocks_tex(T, out, size)])]))
    else:
        groups = _column_groups(T.shape[1], size, side)
        whole = T.shape[0] <= 2 * side and len(groups) <= 4
        said = []
        if len(size) == 2:
            said.append(
                "In 2-D, $T$ is doubly blocked (a block for each output row and input row, "
                "each block banded over the columns); here it is printed as one matrix"
            )
        if whole and len(groups) > 1:
            said.append(
                f"its {T.shape[1]} columns in {len(groups)} slices "
                r"($T_{:,\,a:b}$ holds columns $a$ to $b$), every entry shown"
            )
        if said:
            text = ", ".join(said)
            blocks.append(("p", text[0].upper() + text[1:] + ":"))
        if whole:
            # whole, in slices of columns that fit the page: no entry left out
            blocks.append(
                (
                    "eq",
                    [
                        (
                            "T" if len(groups) == 1 else r"T_{:,\,%d:%d}" % (a + 1, b),
                            [bmatrix(T[:, a:b], 2 * side)],
                        )
                        for a, b in groups
                    ],
                )
            )
        else:
            blocks.append(("eq", [("T", [bmatrix(T, side)])]))
            blocks.append(("p", cut_note(T.shape, side)))
    backward = (
        r"The backward pass is the transpose: $\operatorname{vec}(\partial L / \partial x) = "
        r"T^\top \operatorname{vec}(\delta)$. Column $c$ of $T$ lists the weights through "
        r"which input $c$ reaches every output, so entry $c$ of $T^\top \operatorname{vec}"
        r"(\delta)$ is the chain rule's sum for that input. derivgrad checked both identities "
        r"entry by entry when it wrote this section ($T \operatorname{vec}(x)"
        + bias
        + r"$ is the forward pass, $T^\top \operatorname{vec}(\delta)$ is the closed form of "
        r"$\partial L / \partial x$ printed above, not repeated here), expanding each "
        r"difference to zero."
    )
    blocks.append(("p", backward))
    return blocks


# -- worked problems 4, 5 and 8 -------------------------------------------------------------
def _shapes_doc() -> Doc:
    doc = Doc()
    doc.h("Shape arithmetic (worked problem 4)")
    f, (n, p, k, s, d) = symbolic_output_size()
    # the notes' term order, checked against the kernels' one formula
    notes_form = sp.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1
    if sp.simplify(notes_form - f) != 0:
        raise AssertionError("the printed size formula is not the kernels' one")
    doc.p(
        "The output size of a convolution or pooling window along one axis (input $n$, "
        "padding $p$, kernel $k$, stride $s$, dilation $d$), from the one formula the kernels "
        "use:"
    )
    doc.eq(
        [
            (r"n_{out}", [r"\left\lfloor \frac{n + 2p - d(k - 1) - 1}{s} \right\rfloor + 1"]),
            (r"n_{out}\big|_{d=1,\; s \mid n+2p-k}", [r"\frac{n + 2p - k}{s} + 1"]),
        ]
    )
    a = conv_layer((32, 32), 3, 5, 1)
    b = conv_layer((32, 32), 3, 5, 10, padding=2)
    c = conv_layer((32, 32), 3, 1, 4)
    doc.p(
        r"A $32 \times 32 \times 3$ image and a $5 \times 5 \times 3$ filter at stride 1: "
        f"$(32 - 5)/1 + 1 = {a['output'][1]}$, so ${a['output'][1]} \\times {a['output'][2]}$. "
        f"Zero-padding by 2: $(32 + 4 - 5)/1 + 1 = {b['output'][1]}$, the size is kept. Ten "
        f"such filters give ${b['output'][1]} \\times {b['output'][2]} \\times "
        f"{b['output'][0]}$, with $10 \\cdot 5 \\cdot 5 \\cdot 3 = {b['weights']}$ weights "
        f"({b['params']} with one bias per filter). A $1 \\times 1$ convolution keeps the "
        f"spatial size (${c['output'][1]} \\times {c['output'][2]}$) and mixes channels only: "
        "each output pixel is a linear combination of the input's channels at that pixel (a "
        "fully connected layer applied at every position), which changes the number of "
        f"channels ({c['output'][0]} filters here: $3 \\to {c['output'][0]}$). Max "
        r"pooling with window $K$ and stride $S$ gives $\lfloor (W - K)/S \rfloor + 1$ "
        "along each axis and keeps the channels."
    )
    return doc


def _matrix_doc() -> Doc:
    d = conv1d(input=4, kernel=3, padding=1, bias=False)
    doc = Doc()
    conv_matrix_proves_input_gradient(d)  # raises if it does not hold: the text says "proves"
    doc.h("Convolution as a matrix (worked problem 5)")
    M = conv_matrix(d)
    x = d.input_arrays["x"]
    xbar = sp.Matrix([0, *x, 0])  # the notes' x̄: x zero-padded by 1 on each end
    product = M * xbar
    y = d.output_array
    if any(sp.expand(a - b) != 0 for a, b in zip(product, y)):
        raise AssertionError("W x̄ is not x̄ ⋆ w")
    doc.p(
        r"For $x \in \mathbb{R}^4$ zero-padded by 1 on each end to $\bar x \in \mathbb{R}^6$ "
        r"and $w \in \mathbb{R}^3$, the matrix $W$ (the notes' name; here $w$ is the filter "
        r"and $W$ the matrix) with $W \bar x = \bar x \star w \in \mathbb{R}^4$ is the "
        "banded (Toeplitz) matrix below: each row holds the filter, shifted one place to the "
        "right of the row above. derivgrad builds it by reading off the coefficients of the "
        "correlation of a symbolic padded input, checks the product below against the "
        "correlation entry by entry, and proves that its transpose applied to δ, cropped, is "
        "the input gradient. Every convolution document (1-D or 2-D, any stride, padding, "
        "dilation, channels and filters) carries the same construction for the unpadded "
        "input, in a section of its own."
    )
    doc.eq(
        [
            ("W", [bmatrix(np.array(M.tolist(), dtype=object))]),
            (r"\bar x", [r"(%s)^\top" % ", ".join(tex(e) for e in xbar)]),
            (
                r"W \bar x",
                [bmatrix(np.array(list(product), dtype=object)) + r" = \bar x \star w"],
            ),
        ]
    )
    return doc


def notes_index_rules() -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """Problem 8's ``(forward, dL/dx, dL/dw)`` in the notes' names and 1-based indices: sample
    ``n``, input channel ``c`` of ``C``, output channel ``c'`` of ``C'`` (the derivation in
    :mod:`~derivgrad.symbolic.index_rules` calls them ``o`` and ``O``, its free input channel
    ``c'``); free indices ``(n, c, a, b)`` of x and ``(c', c, a, b)`` of w."""
    y, dx, dw, _ = conv2d_rules()
    c, h, l = IR.c, IR.h, IR.l
    forward = sp.Sum(
        IR.w[IR.o, c, h, l] * IR.x[IR.n, c, IR.i + h - 1, IR.j + l - 1],
        (c, 1, IR.C),
        (h, 1, IR.KH),
        (l, 1, IR.KW),
    )
    names = {IR.o: IR.cp, IR.op_: IR.cp, IR.cp: IR.c, IR.O: sp.Symbol("C'", integer=True)}
    dx1 = one_based(dx, (IR.n, IR.cp, IR.a, IR.b)).xreplace(names)
    dw1 = one_based(dw, (IR.op_, IR.cp, IR.a, IR.b)).xreplace(names)
    return forward.xreplace(names), dx1, dw1


def _channel_check() -> float:
    """The largest difference between problem 8's per-slice forms and the compiled kernels on
    one instance of small integers (exact in float64: any difference is a wrong form)."""
    from .conv_rule import evaluate_channel_rules

    rng = np.random.default_rng(8)
    x = rng.integers(-3, 4, (2, 2, 4, 5)).astype(float)
    w = rng.integers(-3, 4, (3, 2, 2, 3)).astype(float)
    y = K.conv2d_forward(x, w)
    delta = rng.integers(-3, 4, y.shape).astype(float)
    dx, dw, _ = K.conv2d_backward(delta, x, w, bias=False)
    forms = evaluate_channel_rules(x, w, delta)
    return max(
        float(np.abs(forms[k].astype(float) - ref).max())
        for k, ref in (("y", y), ("x", dx), ("w", dw))
    )


def _index_doc() -> Doc:
    from .conv_rule import channel_rules

    forward, dx, dw = notes_index_rules()
    doc = Doc()
    doc.h("Channels, filters and batch in index notation (worked problem 8)")
    doc.p(
        "The setting of this problem: stride 1, no padding, no bias (its gradient is "
        r"$\sum \delta$); problem 9 and every convolution document give the rules for any "
        "stride, padding and dilation. The notes' names: sample $n$ of $N$, input channel $c$ "
        "of $C$, output channel (filter) $c'$ of $C'$, kernel $K_H \\times K_W$. Tensors are "
        r"stored as PyTorch stores them, $x_{n,c,i,j}$ and $w_{c',c,h,l}$ (the notes write "
        r"$x_{i,j,c}$ and $w_{h,l,c,c'}$). The forward pass, a cross-correlation:"
    )
    sums = "".join(r"\sum_{%s=%s}^{%s} " % (tex(v), lo, tex(hi)) for v, lo, hi in forward.limits)
    doc.eq([(r"y_{n,c',i,j}", [sums + tex(forward.function)])])
    doc.p(
        "From this definition with symbolic sizes, SymPy differentiates and resolves the "
        "Kronecker deltas; each input channel is handled by its slice of the filter, the input "
        "gradient sums over the output channels, the weight gradient over the batch. Indices "
        r"are 1-based, as in the notes; $\delta$ is the upstream gradient $\partial L / "
        r"\partial y$, a bracket [condition] is 1 when the condition holds and 0 otherwise, "
        r"and $i$, $j$ run over the output's $H_{out} \times W_{out}$ positions:"
    )
    doc.eq([_index_rule(r"\frac{\partial L}{\partial x_{n,c,a,b}}", dx)])
    doc.eq([_index_rule(r"\frac{\partial L}{\partial w_{c',c,a,b}}", dw)])
    forms = channel_rules()
    doc.p(
        r"In vector form, with $x_{n,c}$ the $H \times W$ map of channel $c$ of sample $n$, "
        r"$w_{c',c}$ the $K_H \times K_W$ filter that reads channel $c$ into channel $c'$, "
        r"and $\star$ the valid cross-correlation $(x \star w)_{i,j} = \sum_{h,l} w_{h,l}\, "
        r"x_{i+h-1,j+l-1}$:"
    )
    doc.eq(
        [
            (r"y_{n,c'}", [forms["y"][0] + " " + forms["y"][1].tex()]),
            (r"\frac{\partial L}{\partial x_{n,c}}", [forms["x"][0] + " " + forms["x"][1].tex()]),
            (r"w^{\top}_{c,c'}", [forms["wT"][1].tex()]),
            (r"\frac{\partial L}{\partial w_{c',c}}", [forms["w"][0] + " " + forms["w"][1].tex()]),
        ]
    )
    doc.p(
        r"Summing over channels as the first line does, the forward pass is $Y = X \star w$ "
        r"and the input gradient is the same operation with the transposed kernel $w^{\top}$ "
        r"(channels swapped, each filter turned by 180°), on $\delta$ padded by $K - 1$ "
        r"($K_H - 1$ rows, $K_W - 1$ columns): $dX = \operatorname{pad}_{K-1}(dY) \star "
        r"w^{\top}$, the notes' $dX = dY * w^{\top}$. The notes write the forward pass as a "
        r"convolution ($x_{i-h,j-w,c}$), so their $*$ is a convolution and their "
        r"$w^{\top}_{h,l,c',c} = w_{-h,-l,c,c'}$; with the correlation above the turn is "
        r"rot180 and the padding makes the correlation full. The weight gradient is the notes' "
        r"$dw_{\cdot,\cdot,c,c'} = (X^{\top})_{\cdot,\cdot,c} * (dY)_{\cdot,\cdot,c'}$ "
        r"($X^{\top}$ the input reflected: a convolution with the reflected input is a "
        r"correlation with the input), summed over the batch, which the notes (one sample) do "
        r"not write."
    )
    worst = _channel_check()
    doc.p(
        "Checked on numbers: with $N = 2$, $C = 2$, $C' = 3$, a $4 \\times 5$ input and "
        "$2 \\times 3$ filters of random integers, the three forms give "
        + ("exactly" if worst == 0 else f"to within {worst:.1e}")
        + " the output and gradients of derivgrad's compiled kernels."
    )
    return doc


def one_based(e: sp.Expr, free: tuple[sp.Symbol, ...]) -> sp.Expr:
    """A derived 0-based index rule ``Sum(Piecewise((term, cond), (0, True)), limits)`` in the
    notes' 1-based indices, with its Kronecker deltas resolved and the conditions that only
    restate a free index's range (``0 <= c' <= C − 1``) left out."""
    if not (isinstance(e, sp.Sum) and isinstance(e.function, sp.Piecewise)):
        return e
    (term, cond), _ = e.function.args
    limits = list(e.limits)
    # KroneckerDelta(o, o'): the sum over o keeps only o = o'
    for kd in term.atoms(sp.KroneckerDelta):
        bound = [v for v in kd.args if any(v == lim[0] for lim in limits)]
        if bound:
            v = bound[0]
            other = kd.args[0] if kd.args[1] == v else kd.args[1]
            term, cond = term.subs(kd, 1).subs(v, other), cond.subs(v, other)
            limits = [lim for lim in limits if lim[0] != v]
    summed = {lim[0] for lim in limits}
    conds = cond.args if isinstance(cond, sp.And) else (cond,)
    kept = [c for c in conds if c.free_symbols & summed]  # the rest is a free index's range
    idx = summed | set(free)
    shift = {v: v - 1 for v in idx}
    term = term.replace(
        lambda t: isinstance(t, sp.Indexed),
        lambda t: t.base[tuple(sp.expand(i.subs(shift) + 1) for i in t.indices)],
    )
    new_cond = sp.And(*[c.subs(shift) for c in kept]) if kept else sp.true
    new_limits = [(v, lo + 1, hi + 1) for v, lo, hi in limits]
    return sp.Sum(sp.Piecewise((term, new_cond), (0, True)), *new_limits)


def _index_rule(lhs, e):
    """``Sum(Piecewise((term, cond), (0, True)), limits...)`` as the sum of the term, with its
    condition as an Iverson bracket on the next line."""
    if isinstance(e, sp.Sum) and isinstance(e.function, sp.Piecewise):
        (term, cond), _ = e.function.args
        idx = ",".join(tex(l[0]) for l in e.limits)
        conds = [tex(c) for c in (cond.args if isinstance(cond, sp.And) else (cond,))]
        lines = [r"\sum_{%s} %s \;\big[" % (idx, tex(term)) + r" \wedge ".join(conds[:3])]
        for k in range(3, len(conds), 3):
            lines.append(r"\wedge " + r" \wedge ".join(conds[k : k + 3]))
        lines[-1] += r"\big]"
        return lhs, lines
    if isinstance(e, sp.Sum):  # the ranges are said in the text: only the indices summed
        order = [IR.n, IR.cp, IR.i, IR.j]  # batch, channel, then position, as the notes go
        idx = sorted((l[0] for l in e.limits), key=lambda v: order.index(v) if v in order else 9)
        return lhs, [r"\sum_{%s} %s" % (",".join(tex(v) for v in idx), tex(e.function))]
    return lhs, [tex(e)]


# -- the op protocol ---------------------------------------------------------------------------


@st.composite
def _geometry(draw: Any, ndim: int) -> dict[str, Any]:
    """Hyper-parameters first, then sizes that fit them; N, C, O drawn independently."""
    k = [draw(st.integers(1, 3)) for _ in range(ndim)]
    s = [draw(st.integers(1, 2)) for _ in range(ndim)]
    p = [draw(st.integers(0, 2)) for _ in range(ndim)]
    d = [draw(st.integers(1, 2)) for _ in range(ndim)]
    size = [draw(st.integers(max(1, dd * (kk - 1) + 1 - 2 * pp), 5)) for kk, pp, dd in zip(k, p, d)]
    out = dict(
        channels=draw(st.integers(1, 2)),
        filters=draw(st.integers(1, 2)),
        batch=draw(st.integers(1, 2)),
        bias=draw(st.booleans()),
    )
    if ndim == 2:
        out.update(input=tuple(size), kernel=tuple(k), stride=tuple(s), padding=tuple(p))
        out.update(dilation=tuple(d))
    else:
        out.update(input=size[0], kernel=k[0], stride=s[0], padding=p[0], dilation=d[0])
    return out


def _compact_rule_section(d: Derivation) -> list[Block]:
    """The course's pad–flip–correlate rules, printed from the expression trees that the
    closed form evaluates (so ``verify()`` proved exactly these), for a single-sample,
    single-channel, single-filter instance (the notes' drawing)."""
    P = d.params
    if (P["batch"], P["channels"], P["filters"]) != (1, 1, 1):
        return []
    g = Geometry(P["input"], P["kernel"], P["stride"], P["padding"], P["dilation"])
    ndim = len(g.size)
    R = conv_rules(g)
    general = general_rules(ndim)
    env = dict(delta=d.upstream_array, w=d.input_arrays["w"], x=d.input_arrays["x"])
    full_delta = R["x"].expr.arg.arg  # type: ignore[attr-defined]
    turned = R["x"].expr.arg.filt  # type: ignore[attr-defined]
    padded, rotated = full_delta.evaluate(env), turned.evaluate(env)
    size = r"an $f \times f$ filter" if ndim == 2 else "a filter of length $f$"
    out: list[Block] = [
        ("h", (2, "The compact rule: pad, flip, correlate")),
        (
            "p",
            "How much to pad δ follows from the sizes: a valid correlation of a map of size "
            rf"$h'$ with {size} has size $h' - f + 1$, and this must equal $h_{{in}}$ when "
            r"$h_{in} = h_{out} + f - 1$ (stride 1, no padding); with $h' = h_{out} + 2q$ that "
            r"gives $q = f - 1$ (the notes call it $p$; here $p$ is the forward padding). "
            r"With stride $s$, padding $p$ and dilation $d$ in general, δ is first dilated by "
            r"the stride ($s - 1$ zeros between neighbours), the filter by the dilation, and "
            r"$q = d(f - 1)$; $\star_{a}$ is a correlation at stride $a$:",
        ),
        ("eq", [(general[k].lhs, [general[k].expr.tex()]) for k in ("x", "w")]),
    ]
    rest = g.rest
    if any(rest):
        axes = ("rows", "columns") if ndim == 2 else ("entries",)
        said: dict[tuple[int, int, int], list[str]] = {}
        for ax, r, n, pp, o in zip(axes, rest, g.size, g.padding, g.out):
            if r:
                said.setdefault((r, n + 2 * pp, o), []).append(ax)
        facts = [
            f"the {o} windows reach the first {m - r} of the {m} {' and '.join(ax)} of the "
            f"padded input, so the last {r if r > 1 else 'one'} "
            f"lie{'' if r > 1 else 's'} past every window"
            for (r, m, o), ax in said.items()
        ]
        out.append(
            (
                "p",
                "Here the stride does not divide $n + 2p - d(f - 1) - 1$: "
                + "; ".join(facts)
                + rf" ($r = {per_axis(rest)}$). No window reads them, so their gradient is 0: "
                r"the input rule pads the dilated δ with $r$ more zeros after (so that the "
                r"correlation has the padded input's size) and the weight rule drops them from "
                r"the padded $x$ (padding $p - r$ after: a negative width removes entries).",
            )
        )
    out += [
        (
            "p",
            "At this instance, with its numbers in every subscript (these are the trees the "
            "closed form above evaluates, so the proof below covers them):",
        ),
        ("eq", [(R[k].lhs, [R[k].expr.tex()]) for k in ("x", "w")]),
        ("p", "The two operands of the input rule, in full:"),
        ("eq", [(full_delta.tex(), [_full(padded)]), (turned.tex(), [_full(rotated)])]),
    ]
    for a in (padded, rotated):
        if abbreviated(a, FULL_SIDE):
            out.append(("p", cut_note(a.shape)))
    return out


FULL_SIDE = 12  # a padded δ up to 12×12 is printed whole: every zero a reader may count


def _full(a: np.ndarray) -> str:
    return bmatrix(a, FULL_SIDE)


def cut_note(shape: tuple[int, ...], side: int = FULL_SIDE) -> str:
    """What :func:`bmatrix` leaves out of a matrix of ``shape`` past ``side``, said exactly
    (it keeps the first ``side - 2`` rows and columns and the last)."""
    parts = []
    for ax, n in zip(("rows", "columns"), shape):
        if n > side:
            parts.append(f"{ax} {side - 1} to {n - 1} of {n}")
    return r"Not printed ($\cdots$, $\vdots$): " + " and ".join(parts) + "."


def _column_groups(ncols: int, size: tuple[int, ...], side: int) -> list[tuple[int, int]]:
    """Slices of at most ``side`` columns, cut between input rows in 2-D (a block of T)."""
    step = size[-1] * max(1, side // size[-1]) if len(size) == 2 and size[-1] <= side else side
    return [(a, min(a + step, ncols)) for a in range(0, ncols, step)]


def _matrix_or_rows(lhs: str, name: str, g: np.ndarray) -> list[tuple[str, list[str]]]:
    """A small gradient as one matrix; wide entries or many columns entry by entry."""
    g2 = g if g.ndim == 2 else g.reshape(-1, 1)
    if g2.shape[1] <= 4 and max(len(tex(e)) for e in g2.reshape(-1)) <= 40:
        return [(lhs, [bmatrix(g)])]
    return [
        (r"\frac{\partial L}{\partial %s}" % indexed(name, idx), tex_split(g[idx]))
        for idx in np.ndindex(*g.shape)
    ]


# derivgrad's own 3×3 / 2×2 example (examples/conv2d_with_numbers.ipynb)
NOTEBOOK_NUMBERS = {
    "x": [[1, 2, 0], [0, -1, 3], [2, 1, 1]],
    "w": [[1, -1], [2, 0]],
    "upstream": [[1, 0], [-1, 2]],
}

# the lecture's example (file 003, slides 28-77): X, W and the upstream gradient ∂J/∂V as the
# slides print them (V = [[11, -13], [4, 9]] on the slides follows from these)
LECTURE_NUMBERS = {
    "x": [[2, -3, 4], [1, -1, 2], [-1, 2, 3]],
    "w": [[3, -1], [4, 2]],
    "upstream": [[3, -2], [1, -1]],
}
# the slides' printed sum for ∂J/∂w₁₁ (slide 59): its terms, and the total the slide states
SLIDE_59_TERMS = ((2, 3), (-3, -2), (1, 1), (-1, -1))
SLIDE_59_TOTAL = 12
SLIDE_DW = ((12, -20), (2, -8))  # ∂J/∂W as the slides print it (slides 62-77)


def _errata_doc() -> Doc:
    """Each slip found in the notes and the slides, with the value computed here."""
    from ..symbolic.shapes import symbolic_output_size
    from .pool import avgpool2d

    doc = Doc()
    doc.h("Errata: slips in the notes and the slides")
    x = np.array(LECTURE_NUMBERS["x"])
    up = np.array(LECTURE_NUMBERS["upstream"])
    dw = np.array([[int((x[i : i + 2, j : j + 2] * up).sum()) for j in range(2)] for i in range(2)])
    terms = " + ".join(
        (f"({a})" if a < 0 else f"{a}") + r" \cdot " + (f"({b})" if b < 0 else f"{b}")
        for a, b in SLIDE_59_TERMS
    )
    differ = [(i, j) for i in range(2) for j in range(2) if dw[i, j] != SLIDE_DW[i][j]]
    same = "all the others" if len(differ) == 1 else "the entries not named"
    total = sum(a * b for a, b in SLIDE_59_TERMS)
    doc.p(
        "1. The lecture (file 003, slide 59 and the slides after it) writes the first entry "
        f"of the weight gradient of its example as the sum below and gives {SLIDE_59_TOTAL}; "
        f"its four products are {', '.join(str(a * b) for a, b in SLIDE_59_TERMS)}, which "
        f"add up to {total}:"
    )
    doc.eq(
        [
            (
                r"\frac{\partial J}{\partial w_{1,1}}",
                [f"{terms} = {total}" + rf" \neq {SLIDE_59_TOTAL}"],
            )
        ]
    )
    doc.p(
        f"The slides carry {SLIDE_59_TOTAL} into "
        r"$\partial J/\partial W$. The correlation $X \star \partial J/\partial V$ of the "
        "slides' own X and upstream gradient gives the matrix on the left; the slides print "
        "the one on the right:"
    )
    doc.eq(
        [
            (
                r"\frac{\partial J}{\partial W}",
                [bmatrix(dw) + r" \neq " + bmatrix(np.array(SLIDE_DW))],
            )
        ]
    )
    doc.p(
        "Entries that differ: "
        + ", ".join(f"$({i + 1}, {j + 1})$" for i, j in differ)
        + f"; {same} agree. Worked problem 14 derives every entry and the kernels confirm it."
    )
    f, (n, p, k, s, d) = symbolic_output_size()
    if sp.simplify(f.subs({p: 0, s: 1, d: 1}) - (n - k + 1)) != 0:
        raise AssertionError("the size formula at s = 1, p = 0 is not n - k + 1")
    doc.p(
        "2. The notes (files 000 and 001, section on the convolution operator) say that the "
        r"output is smaller than the input, $\mathbb{R}^{n-k-1}$ compared to "
        rf"$\mathbb{{R}}^n$. A valid correlation of $x \in \mathbb{{R}}^n$ with "
        rf"$w \in \mathbb{{R}}^k$ has $n - k + 1$ outputs (the one size formula at "
        r"stride 1 without padding, simplified by SymPy; for $n = 4$, $k = 3$: "
        f"{output_size(4, 3, 1, 0, 1)}, as in worked problem 6), so it is "
        r"$\mathbb{R}^{n-k+1}$."
    )
    a = avgpool2d(input=(4, 4), kernel=2)
    g = a.grad_array("x")
    doc.p(
        "3. The notes (file 001, pooling) write "
        r"$dX = \operatorname{AveragePool}(dY)$ for a 2×2 average pooling with stride 2. "
        r"The shapes do not match: $dY$ has the "
        rf"output's shape ({'×'.join(map(str, a.upstream_array.shape))} for a 4×4 input), "
        rf"and average pooling it again gives "
        f"{output_size(a.upstream_array.shape[0], 2, 2, 0, 1)}×"
        f"{output_size(a.upstream_array.shape[1], 2, 2, 0, 1)}, while $dX$ is "
        f"{'×'.join(map(str, g.shape))}. Each input receives a quarter of its window's "
        r"gradient, $dX = \operatorname{upsample}(dY)/4$ (each entry of $dY$ copied over its "
        r"2×2 window, divided by $K^2 = 4$):"
    )
    doc.eq([(r"\frac{\partial L}{\partial x}", [r"\frac{1}{4}" + bmatrix(g * 4)])])
    return doc


class _Conv(Op):
    params = _GEOMETRY
    ndim: int

    def build(self, **params: Any) -> Derivation:
        return conv_nd(self.name, params, self.ndim)

    def cost(self, **params: Any) -> int:
        g = conv_geometry(self.name, params, self.ndim)
        taps = g.C * math.prod(g.kernel)
        # every product w·x is built, differentiated and contracted a fixed number of times,
        # and the dX rule visits every tap at every position of the padded input, zeros too
        padded = math.prod(n + 2 * q for n, q in zip(g.size, g.padding))
        return g.N * g.O * (taps * (math.prod(g.out) + padded) + int(g.bias) * math.prod(g.out))

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        P = d.params
        x = values["x"].reshape(d.extra["x_full"].shape)
        w = values["w"].reshape(d.extra["w_full"].shape)
        b = values.get("b")
        hyper = (P["stride"], P["padding"], P["dilation"])
        if self.ndim == 1:
            hyper = tuple(h[0] for h in hyper)
        forward = K.conv2d_forward if self.ndim == 2 else K.conv1d_forward
        backward = K.conv2d_backward if self.ndim == 2 else K.conv1d_backward
        y = forward(x, w, b, *hyper)
        dx, dw, db = backward(upstream.reshape(y.shape), x, w, *hyper, bias=b is not None)
        grads = {"x": dx.reshape(values["x"].shape), "w": dw.reshape(values["w"].shape)}
        if b is not None:
            grads["b"] = db
        return y.reshape(upstream.shape), grads

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return _geometry(self.ndim)

    def sections(self, d: Derivation) -> list[Block]:
        return _input_matrix_section(d) + _compact_rule_section(d)


class Conv1d(_Conv):
    name = "conv1d"
    # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py), the rate of the largest
    # instances (small ones spend a fixed tenth of a second the steps do not count)
    us_per_step = 25.0
    title = "1-D convolution"
    problems = "5, 6"
    ndim = 1

    def worked_problems(self) -> list[Problem]:
        return [
            Problem("5", "Convolution as a matrix", make=_matrix_doc),
            Problem("6", "1-D convolution backward", params=dict(input=4, kernel=3, bias=False)),
        ]


class Conv2d(_Conv):
    name = "conv2d"
    # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py), the rate of the largest
    # instances (small ones spend a fixed tenth of a second the steps do not count)
    us_per_step = 25.0
    title = "2-D convolution"
    problems = "7, 8, 9"
    ndim = 2

    def worked_problems(self) -> list[Problem]:
        return [
            Problem("4", "Shape arithmetic", make=_shapes_doc),
            Problem(
                "7",
                "2-D convolution backward: a 3×3 input and a 2×2 filter",
                params=dict(input=(3, 3), kernel=(2, 2), bias=False),
            ),
            Problem("8", "Channels, filters and batch in index notation", make=_index_doc),
            Problem(
                "9",
                "2-D convolution with stride 2 and padding 1",
                params=dict(input=(4, 4), kernel=(2, 2), stride=2, padding=1, bias=False),
            ),
            Problem(
                "14",
                "The lecture's example, with its numbers",
                params=dict(input=(3, 3), kernel=(2, 2), bias=False),
                values=LECTURE_NUMBERS,
                source="file 003, slides 28-77",
            ),
            Problem("14e", "Errata", make=_errata_doc),
        ]

    def shapes(self, **params: Any) -> str:
        def given(name: str, default: Any, minimum: int = 1) -> int:
            v = params.get(name)
            return default if v is None else count("shapes conv2d", name, v, minimum)

        size = pair("shapes conv2d", "input", params.get("input") or "32x32", 1)
        r = conv_layer(
            size,
            given("channels", 1),
            given("kernel", 3),
            given("filters", 1),
            given("stride", 1),
            given("padding", 0, 0),
        )
        if min(r["output"][1:]) < 1:
            raise ParamError(
                f"shapes conv2d: a {given('kernel', 3)}x{given('kernel', 3)} kernel does not fit "
                f"a {size[0]}x{size[1]} input with padding {given('padding', 0, 0)}"
            )
        return json.dumps(r)


OPS = (Conv1d(), Conv2d())
