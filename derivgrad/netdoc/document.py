"""The network's derivation written out: layer by layer, each layer's local rule (scalar and
vector form, from its op's derivation), its numbers on the sample, the chain from the loss
back to every parameter, and the comparison with the network's own pass (the kernels).
Every format ``derive`` writes: the document model for the text formats, data for JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .. import formats
from ..documents.document import (
    Doc,
    escape_text,
    indexed,
    rule_tex,
    tex_name,
    tex_split,
)
from ..documents.numeric_steps import num_tex
from ..documents.render import proof_sentence
from ..symbolic.derivation import Derivation
from .derivation import NetworkDerivation, Step, exact_numbers

SIDE = 8  # rows or columns of a printed array of numbers; past it, the cut is named
SCALAR_ENTRIES = 3  # entries of a layer's forward (and of each gradient) in scalar form


def _act(a: int, nd: NetworkDerivation) -> str:
    return "x" if a == 0 else f"{nd.letter}^{{({nd.tag(a)})}}"


def _delta(a: int, nd: NetworkDerivation) -> str:
    return rf"\delta^{{({nd.tag(a)})}}"


def _param(k: str, t: int, nd: NetworkDerivation) -> str:
    name = tex_name(k)
    return f"{{{name}}}^{{({nd.tag(t)})}}" if "^" in name else f"{name}^{{({nd.tag(t)})}}"


def _shape(s: tuple[int, ...]) -> str:
    return r"\mathbb{R}^{" + r" \times ".join(map(str, s)) + "}" if s else r"\mathbb{R}"


def _cut(n: int) -> list[int | None]:
    return list(range(n)) if n <= SIDE else [*range(SIDE - 2), None, n - 1]


WIDTH = 70  # characters of numbers in one printed row; a wider matrix prints in column blocks


def _matrix(a: np.ndarray) -> tuple[list[tuple[str, str]], str]:
    """A 1-D or 2-D array of numbers as matrices: ``[(column range, matrix)]`` (one block
    unless the row is too wide for a line: then blocks of columns, each named by its range,
    empty when one block holds all) and the sentence naming what a cut left out."""
    a = np.asarray(a, dtype=object)
    if a.ndim == 1:  # a row when it fits the line, else a column
        wide = sum(len(num_tex(v)) + 3 for v in a.reshape(-1)[:SIDE]) > 48
        a = a.reshape(-1, 1) if a.shape[0] > SIDE or wide else a.reshape(1, -1)
    rows_kept, cols_kept = _cut(a.shape[0]), _cut(a.shape[1])
    text = {
        (i, j): num_tex(a[i, j])
        for i in rows_kept
        if i is not None
        for j in cols_kept
        if j is not None
    }
    width = {
        j: max(len(text[i, j]) for i in rows_kept if i is not None) + 3
        for j in cols_kept
        if j is not None
    }
    blocks: list[list[int | None]] = [[]]
    used = 0
    for j in cols_kept:
        w = 3 if j is None else width[j]
        if blocks[-1] and used + w > WIDTH:
            blocks.append([])
            used = 0
        blocks[-1].append(j)
        used += w
    out = []
    for cols in blocks:
        rows = []
        for i in rows_kept:
            cells = []
            for j in cols:
                if i is None:
                    cells.append(r"\ddots" if j is None else r"\vdots")
                else:
                    cells.append(r"\cdots" if j is None else text[i, j])
            rows.append(" & ".join(cells))
        real = [j for j in cols if j is not None]
        first, last = real[0] + 1, real[-1] + 1
        span = "" if len(blocks) == 1 else str(first) if first == last else f"{first}:{last}"
        out.append((span, r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"))
    left = []
    for what, n in (("rows", a.shape[0]), ("columns", a.shape[1])):
        if n > SIDE:
            left.append(f"{what} {SIDE - 1} to {n - 1} of {n}")
    return out, ("left out of the printed matrix: " + " and ".join(left) if left else "")


def _numbers(name: str, a: np.ndarray) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """Rows ``name = matrix`` (one per channel of a 3-axis array, one per block of columns of
    a wide one; unit axes dropped)."""
    a = np.asarray(a, dtype=object)
    a = a.reshape([n for n in a.shape if n != 1]) if a.size > 1 else a.reshape(1)
    rows, notes = [], []
    lead = a.reshape(1, *a.shape) if a.ndim <= 2 else a.reshape(-1, *a.shape[-2:])
    for c in range(lead.shape[0]):
        blocks, note = _matrix(lead[c])
        idx = np.unravel_index(c, a.shape[:-2]) if a.ndim > 2 else ()
        head = ",".join(str(i + 1) for i in idx)
        for span, m in blocks:
            if not head and not span:
                label = name
            else:
                parts = ([head] if head else []) + (
                    [":", span] if span else [":", ":"] if head else []
                )
                label = f"{name}_{{{','.join(parts)}}}"
            rows.append((label, [m]))
        label = name if not head else f"{name}_{{{head},:,:}}"
        notes += [f"${label}$: {note}"] if note else []
    return rows, notes


def _eq_numbers(doc: Doc, pairs: list[tuple[str, np.ndarray]]) -> None:
    rows: list[tuple[str, list[str]]] = []
    notes: list[str] = []
    for name, a in pairs:
        r, n = _numbers(name, a)
        rows += r
        notes += n
    doc.eq(rows)
    if notes:
        doc.p(
            "Printed matrices keep their first and last rows and columns; "
            + "; ".join(notes)
            + " (every number is in the JSON output, --format json)."
        )


def _scalar(doc: Doc, lhs: Any, arr: np.ndarray, what: str) -> None:
    items = list(np.ndindex(arr.shape))
    shown = items[:SCALAR_ENTRIES]
    doc.eq([(lhs(i), tex_split(arr[i])) for i in shown])
    if len(items) > len(shown):
        left = len(items) - len(shown)
        doc.p(
            f"(the other {left} entries of {what} have the same form.)"
            if left > 1
            else f"(the other entry of {what} has the same form.)"
        )


def _what(k: str) -> str:
    if k.startswith("∂L/∂"):
        return f"$\\partial L / \\partial {tex_name(k[4:])}$"
    return escape_text(k)


def _errors(s: Step) -> str:
    what = _what
    return ", ".join(f"{what(k)} {_fmt_err(e)}" for k, e in s.errors.items())


def _fmt_err(e: float) -> str:
    return "agrees" if e <= 1.0 else f"DIFFERS ({e:.3g} times the tolerance)"


def _op_sentence(s: Step) -> str:
    assert s.op is not None and s.face is not None
    p = ", ".join(
        f"{k} = {'x'.join(map(str, v)) if isinstance(v, tuple) else v}"
        for k, v in s.face.params.items()
    )
    return f"the op {escape_text(s.op.name)} of derivgrad ({escape_text(p)})"


def _layer_section(doc: Doc, s: Step, nd: NetworkDerivation) -> None:
    m = s.module
    t, a = s.index, s.inputs[0]
    tag = f" ({escape_text(nd.tags[t])})" if t in nd.tags else ""
    doc.h(f"Layer {t}{tag}: {escape_text(m.describe())}", 2)
    if s.residual:
        b = s.inputs[0]
        a = s.inputs[1]
        doc.p(
            f"The skip connection of {escape_text(m.name)} adds its block's output to the "
            f"block's input: ${_act(t, nd)} = {_act(b, nd)} + {_act(a, nd)}$. Its backward "
            f"pass hands ${_delta(t, nd)}$ to both: $\\partial L / \\partial {_act(b, nd)}$ "
            f"receives ${_delta(t, nd)}$, and ${_delta(t, nd)}$ is added to what flows into "
            f"${_act(a, nd)}$ "
            "from the block."
        )
        _eq_numbers(doc, [(_act(t, nd), s.y), (_delta(t, nd), s.delta)])  # type: ignore[list-item]
        return
    doc.p(
        f"Reads ${_act(a, nd)} \\in {_shape(m.in_shape)}$ and writes ${_act(t, nd)} \\in "
        f"{_shape(m.shape_out)}$"
        + (
            "."
            if s.d is None
            else f"; its derivation is that of {_op_sentence(s)}, in the op's own symbols: "
            f"${tex_name(s.face.input)}$ is ${_act(a, nd)}$, $y$ is ${_act(t, nd)}$"  # type: ignore[union-attr]
            + "".join(
                f", ${tex_name(k)}$ is the parameter ${_param(k, t, nd)}$ "
                f"({escape_text(nd.tags.get(t, m.name))}.{p})"
                for k, p in s.face.names.items()  # type: ignore[union-attr]
            )
            + f" and $\\delta = {_delta(t, nd)} = \\partial L / \\partial {_act(t, nd)}$."
        )
    )
    if s.d is None:
        doc.p(
            f"This layer ({type(m).__name__}) names no op of derivgrad, so it has no derivation "
            "here: its numbers below are the network's own, and its backward pass was held "
            "to central differences of the layer alone at this input ("
            + ("passed" if s.errors.get("backward (central differences)", 1) <= 1.0 else "FAILED")
            + ")."
        )
        _eq_numbers(doc, [(_act(t, nd), s.y), (_delta(t, nd), s.delta)])  # type: ignore[list-item]
        return
    d: Derivation = s.d
    face = s.face
    assert face is not None
    out = d.output_array
    doc.p("Forward, scalar form:")
    _scalar(doc, lambda i: indexed("y", i), out, "y")
    doc.p("Backward, the local rules (vector form, then the scalar form of the first entries):")
    for k in d.grad_names:
        who = _act(a, nd) if k == face.input else _param(k, t, nd)
        rule = d.rules.get(k)
        text = rule_tex(rule.text) if rule is not None and rule.text else ""
        also = f" (that is, $\\partial L / \\partial {who}$)" if who != tex_name(k) else ""
        doc.p(f"$\\partial L / \\partial {tex_name(k)}${also}" + (f": {text}." if text else ":"))
        _scalar(
            doc,
            lambda i, k=k: r"\frac{\partial L}{\partial " + indexed(tex_name(k), i) + "}",
            d.grad_array(k),
            rf"$\partial L / \partial {tex_name(k)}$",
        )
    doc.p(proof_sentence(d, d.proof.sentence))
    doc.p("On the sample:")
    pairs: list[tuple[str, Any]] = [(_act(t, nd), s.y), (_delta(t, nd), s.delta)]
    pairs += [
        (rf"\frac{{\partial L}}{{\partial {_param(k, t, nd)}}}", s.grads[k]) for k in face.names
    ]
    pairs.append((rf"({_act(t, nd)} \to {_act(a, nd)})", s.grads[face.input]))
    _eq_numbers(doc, pairs)
    into = _delta(a, nd) if a else r"\partial L / \partial x"
    doc.p(
        f"The last array is this layer's part of ${into}$ "
        "(the chain below adds the parts of every layer that reads it)."
    )


def _chain_section(doc: Doc, nd: NetworkDerivation) -> None:
    steps = nd.steps
    n = steps[-1].index
    doc.h("The chain from the loss back to every parameter", 2)
    doc.p(
        rf"Write $\delta^{{(t)}} = \partial L / \partial {nd.letter}^{{(t)}}$ and $J_t = "
        rf"\partial {nd.letter}^{{(t)}} / \partial (\text{{its input}})$ (layer $t$'s local "
        r"Jacobian, whose transpose applied to a vector is the layer's local rule above). From "
        r"the loss back to the input:"
    )
    rows: list[tuple[str, list[str]]] = [(_delta(n, nd), [r"p - e_y"])]
    readers: dict[int, list[str]] = {}
    for s in steps:
        if s.residual:
            readers.setdefault(s.inputs[0], []).append(_delta(s.index, nd))
            readers.setdefault(s.inputs[1], []).append(_delta(s.index, nd))
        else:
            readers.setdefault(s.inputs[0], []).append(
                rf"J_{{{nd.tag(s.index)}}}^\top {_delta(s.index, nd)}"
            )
    for a in sorted(readers, reverse=True):
        rows.append(
            (_delta(a, nd) if a else r"\frac{\partial L}{\partial x}", [" + ".join(readers[a])])
        )
    doc.eq(rows)
    prow = []
    for s in steps:
        if s.face is None or s.d is None:
            continue
        for k in s.face.names:
            prow.append(
                (
                    rf"\frac{{\partial L}}{{\partial {_param(k, s.index, nd)}}}",
                    [
                        rf"\Big(\frac{{\partial {_act(s.index, nd)}}}"
                        rf"{{\partial {_param(k, s.index, nd)}}}"
                        rf"\Big)^\top {_delta(s.index, nd)}"
                    ],
                )
            )
    if prow:
        doc.p("and each parameter's gradient from the δ of the layer that holds it:")
        doc.eq(prow)
    doc.p(
        "derivgrad computed every δ and every parameter gradient of this document from the "
        "layers' derivations alone (each layer's closed form at its numbers, the δ handed "
        "down from the layer above), and separately ran the network's own forward and "
        "backward pass (the kernels) on the same sample."
    )


def network_document(
    nd: NetworkDerivation,
    title: str | None = None,
    problem: str = "",
    extra: list[tuple[str, Any]] | None = None,
) -> Doc:
    """The document; ``title`` and ``problem`` (a first sentence) replace the generic ones,
    ``extra`` (document blocks) goes after the chain, before the proofs and the check."""
    doc = Doc()
    k = nd.net.root.shape_out[0]
    doc.h(title or f"The network {nd.spec}: forward and backward pass, layer by layer")
    doc.p(
        (problem or f"Problem. The network of {escape_text(nd.spec)}") + f" on one sample $x \\in "
        f"{_shape(nd.in_shape)}$ with label $y = {nd.label}$ of {k} classes, loss "
        rf"$L = -\log p_y$ with $p = \operatorname{{softmax}}({_act(nd.steps[-1].index, nd)})$ "
        "(softmax cross-entropy, "
        "what the network trains with). Derive the gradient of $L$ with respect to every "
        "parameter, layer by layer, and check it against the network's own kernels. "
        f"The sample and every parameter are small integers drawn from seed {nd.seed} ("
        + (f"{escape_text(nd.seed_note)}; " if nd.seed_note else "")
        + f"in {list(range(-2, 3))} and {list(range(-1, 2))}; they replace the network's "
        "initialisation so that the forward pass prints exactly); from the loss's gradient "
        "on, numbers are 53-bit floats printed to six digits, so a sum that cancels can "
        r"print as a round-off residue (such as $10^{-18}$) instead of 0. Indices are "
        "1-based."
    )
    lines = []
    for s in nd.steps:
        m = s.module
        ins = " + ".join(f"${_act(a, nd)}$" for a in s.inputs)
        n_par = sum(int(v.size) for v in m.params.values()) if not s.residual else 0
        how = (
            "skip connection"
            if s.residual
            else ("no op: central differences only" if s.d is None else f"op {s.op.name}")  # type: ignore[union-attr]
        )
        lines.append(
            f"{s.index}. {escape_text(m.describe())} ({escape_text(nd.tags.get(s.index, m.name))}):"
            f" {ins} → "
            f"${_act(s.index, nd)} \\in {_shape(m.shape_out)}$, {n_par} parameters, "
            f"{escape_text(how)}."
        )
    doc.p(
        f"The layers, in forward order (${nd.letter}^{{(t)}}$ is the output of layer $t$"
        + (", each layer named as the network names it):" if nd.tags else "):")
    )
    for line in lines:
        doc.p(line)
    doc.h("The sample", 2)
    _eq_numbers(doc, [("x", exact_numbers(nd.x))])
    for s in nd.steps:
        _layer_section(doc, s, nd)
    _loss_section(doc, nd)
    _chain_section(doc, nd)
    doc.blocks.extend(extra or [])
    _composed_section(doc, nd)
    _check_section(doc, nd)
    return doc


def _composed_section(doc: Doc, nd: NetworkDerivation) -> None:
    cd = nd.composed
    doc.h("Proof: the whole network as one expression", 2)
    if cd is None:
        doc.p(
            "The loss as one expression of the whole network (SymPy's derivative of it, "
            f"compared with the layer-by-layer rules symbolically) was not derived: "
            f"{escape_text(nd.composed_why)}. The layers' own proofs above and the check "
            "against the kernels below are what this document rests on."
        )
        return
    names = [n for n in cd.grad_names if n != "x"]
    doc.p(
        "derivgrad also wrote the loss $L$ as one SymPy expression of the sample $x$ and every "
        f"parameter ({len(names)} parameter arrays, "
        f"{sum(int(cd.input_arrays[n].size) for n in names)} entries, each a symbol: each "
        "layer's forward expressions with its input replaced by the expressions of the layer "
        "below), and wrote the backward pass above in the same symbols: each layer's closed "
        r"form with its $\delta$ replaced by the expression the layer above hands down. "
        "Then it compared, for every entry of every parameter and of $x$, the layer-by-layer "
        "gradient with SymPy's derivative of the one expression (the chain rule through the "
        "whole network at once), for every value of the input and the parameters. "
        + (
            f"derivgrad proved the two equal symbolically, entry by entry, by {cd.proof.sentence}."
            if cd.verified
            else "Not verified: the symbolic proof of that equality was skipped."
        )
    )
    doc.p(
        "Evaluated at the sample and the parameters above, the composed gradients and loss "
        + (
            "equal the layer-by-layer numbers of this document"
            if nd.composed_error <= 1.0
            else f"DIFFER from the layer-by-layer numbers ({nd.composed_error:.3g} times the "
            "tolerance)"
        )
        + r" ($|\text{composed} - \text{layer by layer}| \le 10^{-9} \max(1, |\text{composed}|)$)."
    )


def _loss_section(doc: Doc, nd: NetworkDerivation) -> None:
    n = nd.steps[-1].index
    d = nd.loss
    doc.h("The loss", 2)
    doc.p(
        rf"$L = -\log p_y = -{_act(n, nd)}_y + \log \sum_j e^{{{_act(n, nd)}_j}}$, the op "
        f"{escape_text(d.op)} of derivgrad with its rule "
        f"{rule_tex(d.rules[d.grad_names[0]].text)}. {proof_sentence(d, d.proof.sentence)}"
    )
    p_rows, _ = _numbers("p", nd.probs)
    doc.eq(p_rows + [("L", [num_tex(nd.loss_value)])])
    _eq_numbers(doc, [(_delta(n, nd), nd.steps[-1].delta)])  # type: ignore[list-item]


def _check_section(doc: Doc, nd: NetworkDerivation) -> None:
    doc.h("Checked against the kernels", 2)
    doc.p(
        "Each array derived above against the network's own pass on the same sample "
        r"(derivgrad.nn, float64: the training's kernels), as $\max |\text{derived} - "
        r"\text{kernels}| \le 10^{-9} \max(1, |\text{kernels}|)$:"
    )
    for s in nd.steps:
        doc.p(f"{s.index}. {escape_text(s.module.describe())}: {_errors(s)}.")
    bad = [
        f"layer {s.index} ({escape_text(s.module.describe())}) {_what(k)}"
        for s in nd.steps
        for k, e in s.errors.items()
        if not e <= 1.0
    ]
    doc.p(
        "All agree."
        if not bad
        else "They DIFFER at: "
        + "; ".join(bad)
        + ". Where a layer's output agrees but a gradient differs, the layer whose numbers "
        "differ first on the way back (the highest layer number) is wrong: every layer "
        "above it handed it the same $\\delta$."
    )


# -- data (JSON) -------------------------------------------------------------------------------
def _data_array(a: Any) -> Any:
    a = np.asarray(a, dtype=object)
    return np.vectorize(lambda v: int(v) if v.is_Integer else float(v), otypes=[object])(a).tolist()


def to_data(nd: NetworkDerivation) -> dict[str, Any]:
    layers = []
    for s in nd.steps:
        m = s.module
        entry: dict[str, Any] = dict(
            index=s.index,
            name=m.name,
            layer=m.describe(),
            reads=list(s.inputs),
            output_shape=list(m.shape_out),
            op=None if s.op is None else s.op.name,
            params=None
            if s.face is None
            else {k: list(v) if isinstance(v, tuple) else v for k, v in s.face.params.items()},
            output=_data_array(s.y),
            delta=_data_array(s.delta),
            check={k: (e if math.isfinite(e) else None) for k, e in s.errors.items()},
            agrees=all(e <= 1.0 for e in s.errors.values()),
        )
        if s.d is not None and s.face is not None:
            entry["rules"] = {k: getattr(s.d.rules.get(k), "text", None) for k in s.d.grad_names}
            entry["verified"] = bool(s.d.verified)
            entry["gradients"] = {k: _data_array(v) for k, v in s.grads.items()}
            entry["parameters"] = {p: m.params[p].tolist() for p in s.face.names.values()}
            entry["parameter_names"] = dict(s.face.names)  # op input -> the layer's parameter
        layers.append(entry)
    return dict(
        network=nd.spec,
        input_shape=list(nd.in_shape),
        label=nd.label,
        seed=nd.seed,
        x=nd.x.tolist(),
        loss=nd.loss_value,
        probabilities=nd.probs.tolist(),
        layers=layers,
        # the whole network as one expression (netdoc.composed): proved, or why not tried
        composed=dict(
            proved=nd.composed is not None and nd.composed.verified,
            agrees=nd.composed_error <= 1.0 if nd.composed is not None else None,
            why_not=nd.composed_why or None,
        ),
        agrees=not nd.failures,
    )


def render_network(nd: NetworkDerivation, fmt: str = "latex", standalone: bool = True) -> str:
    """The document in ``fmt`` (any of :func:`derivgrad.formats.names`); JSON as data."""
    if fmt == "json":
        return json.dumps(to_data(nd), indent=1) + "\n"
    return formats.get(fmt).document(network_document(nd), standalone)
