r"""Worked solutions from derivations: LaTeX (standalone or fragment), Markdown, text.

A document follows the course's order: the problem, the forward pass in scalar form, the
local derivatives (4-D Jacobians as block matrices, input-first layout), the chain rule as
a contraction with the upstream gradient δ, the closed form, and the compact rule with
what :meth:`Derivation.verify` proved.  Every formula is printed from the SymPy object it
states, by one printer (:func:`tex`), so text and mathematics cannot drift apart.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import formats
from ..formats.latex import LatexWriter
from ..registry import get
from ..symbolic.derivation import Derivation, register_renderer
from .document import (
    ABBREVIATED,
    MAX_ENTRY_CHARS,
    MAX_ROWS,
    Doc,
    abbreviate,
    abbreviate_array,
    abbreviated,
    bmatrix,
    common_factor,
    entries,
    entry_rows,
    escape_text,
    fmt_param,
    fmt_shape,
    has_upstream,
    indexed,
    jacobian_tex,
    rule_tex,
    tex,
    tex_name,
    tex_split,
)
from .numeric_steps import _said_locally as said_locally
from .numeric_steps import at as numbers_at


def _lowercase_title(title: str) -> str:
    """ "Max pooling" -> "max pooling"; an acronym or a formula keeps its case ("ReLU")."""
    first = title.split()[0]
    if len(first) > 1 and (first[1:].islower() or not first[1:].isalpha()) and first.isalpha():
        return title[0].lower() + title[1:]
    return title


def _eq_rows(doc, rows, note):
    if rows:
        doc.eq(rows)
    if note:
        doc.p(note)


def build(d: Derivation, heading: str | None = None) -> Doc:
    """The worked solution of derivation ``d`` as a :class:`Doc`: the op's own document if
    it has one (a network), else the generic steps with the op's own sections inserted.
    ``heading``: the title of the whole (a worked problem's own title, so that two problems
    of one op do not share the op's title); by default the op's title."""
    op = get(d.op)
    whole = op.document(d)
    if whole is not None:
        whole.blocks.extend(numbers_at("whole", d))  # NUMBERS: a numeric instance, appended
        if heading is not None and whole.blocks and whole.blocks[0][0] == "h":
            whole.blocks[0] = ("h", (1, heading))
        return whole
    doc = Doc()
    title = escape_text(op.title)  # a defined layer's title is the user's text
    loss = not has_upstream(d)
    print_as = d.extra.get("print_as")
    show = lambda e: abbreviate(e, print_as)  # noqa: E731
    probs = (
        f" (worked problem{'s' if ',' in op.problems else ''} {op.problems})" if op.problems else ""
    )
    doc.h(heading if heading is not None else f"{title}: the gradient{probs}")
    # the hyper-parameters a reader needs: a switch shows in the inputs (b or no b), a count
    # of 1 (one channel, one sample) in the shapes
    kinds = {p.name: p.kind for p in getattr(op, "params", ())}
    # an index (a class label, "1-based") is a value a reader needs whatever it is; a count or
    # a size that an input's shape already says (classes = 3 beside z ∈ ℝ³) is said there
    index = {p.name for p in getattr(op, "params", ()) if "1-based" in p.help}
    # only a size can be said by a shape: a stride of 2×2 beside w ∈ ℝ^{2×2} is not
    sizes = {
        p.name
        for p in getattr(op, "params", ())
        if any(w in p.help for w in ("size", "features", "classes", "length", "units"))
    }
    shapes_said = {v.shape for v in d.input_arrays.values()} - {(), (1,)}  # b ∈ ℝ says no size

    def said(k: str, v: object) -> bool:
        if k in index:
            return False
        if k in d.input_arrays and v == d.input_arrays[k].shape:
            return True  # a defined layer's input shape, said with the input
        if kinds.get(k) == "bool" or (kinds.get(k) == "int" and v == 1):
            return True
        shape = tuple(v) if isinstance(v, (tuple, list)) else (v,)
        return k in sizes and shape in shapes_said

    params = ", ".join(
        f"{k} = {fmt_param(v, k)}" for k, v in d.params.items() if v is not None and not said(k, v)
    )

    # as the notes write them: x ∈ ℝ⁴, W ∈ ℝ^{3×3}
    def space(shape: tuple[int, ...]) -> str:
        if shape in ((), (1,)):
            return r"\mathbb{R}"  # one number
        return r"\mathbb{R}^{" + r" \times ".join(map(str, shape)) + "}"

    shapes = ", ".join(f"${tex_name(k)} \\in {space(v.shape)}$" for k, v in d.input_arrays.items())
    doc.p(
        f"Problem. For the {_lowercase_title(title)} with "
        + (f"{params}, " if params else "")
        + f"inputs {shapes}, derive the gradient of the "
        + (
            "loss $L$ with respect to every input (the output is the loss itself)."
            if loss
            else r"loss $L$ with respect to every input, given the upstream gradient "
            r"$\delta = \partial L / \partial y$."
        )
        + " Indices are 1-based, as in the course notes."
    )
    doc.blocks.extend(op.definitions(d))
    doc.blocks.extend(numbers_at("problem", d))  # NUMBERS: the given values
    # forward
    doc.h("Forward pass in scalar form", 2)
    lines, note = entry_rows(
        lambda idx: "L" if loss else indexed("y", idx), d.output_array, show, limit=24
    )
    doc.p(
        "The output is a scalar expression of the named inputs:"
        if loss
        else "Each output is a scalar expression of the named inputs:"
    )
    _eq_rows(doc, lines, note)
    doc.blocks.extend(numbers_at("forward", d))  # NUMBERS: forward outputs
    # local derivatives
    doc.h("Local derivatives", 2)
    if loss:
        letters = lambda v: ",".join("ijkl"[: v.ndim])  # noqa: E731
        each = "; ".join(
            f"entry ${letters(v)}$ of $\\partial L / \\partial {tex_name(k)}$ is "
            f"$\\partial L / \\partial {tex_name(k)}_{{{letters(v)}}}$"
            for k, v in d.input_arrays.items()
        )
        doc.p(
            r"The output is the loss $L$ itself, so its derivative with respect to each input "
            f"has the shape of that input: {each}."
        )
    else:
        doc.p(LAYOUT)
    for k, v in d.input_arrays.items():
        _local_derivatives(doc, d, k, v, show, loss)
    doc.blocks.extend(numbers_at("local", d))  # NUMBERS: local derivatives
    # chain rule
    doc.h("Chain rule", 2)
    if loss:
        doc.p(
            "The output is the loss, so there is no upstream gradient to contract: the "
            "gradient is the derivatives above."
        )
    else:
        doc.p(
            r"The gradient is the Jacobian contracted with the upstream gradient: "
            r"$\frac{\partial L}{\partial x_i} = \sum_o \frac{\partial y_o}{\partial "
            r"x_i}\,\delta_o$."
        )
        for k, v in d.input_arrays.items():
            if _inner_products(doc, d, k, v):
                continue
            rows, note = entry_rows(
                lambda idx, k=k: r"\frac{\partial L}{\partial " + indexed(tex_name(k), idx) + "}",
                d.chain_array(k),
                show,
            )
            _eq_rows(doc, rows, note)
    doc.blocks.extend(numbers_at("chain", d))  # NUMBERS: each sum written out
    # closed form
    doc.h("Closed form", 2)
    for k in d.grad_names:
        if loss and said_locally(d, k):
            doc.p(
                f"Rule for ${tex_name(k)}$: {rule_tex(d.rules[k].text)}; entry by entry, the "
                "derivatives above."
            )
            continue
        g = abbreviate_array(d.grad_array(k), print_as)
        as_matrix = (
            g.ndim == 2
            and g.size <= 36
            and max(len(tex(e)) for e in g.reshape(-1)) <= MAX_ENTRY_CHARS
        )
        if not loss and not as_matrix and said_in_chain(d, k):
            doc.p(
                f"Rule for ${tex_name(k)}$: {rule_tex(d.rules[k].text)}; entry by entry, the "
                "sums of the chain rule above."
            )
            continue
        doc.p(f"Rule for ${tex_name(k)}$: {rule_tex(d.rules[k].text)}.")
        if as_matrix:
            c, rest = common_factor(g)
            factor = "" if c == 1 else tex(c) + " "
            doc.eq([(r"\frac{\partial L}{\partial " + tex_name(k) + "}", [factor + bmatrix(rest)])])
        else:
            rows, note = entry_rows(
                lambda idx, k=k: r"\frac{\partial L}{\partial " + indexed(tex_name(k), idx) + "}",
                g,
                lambda e: e,
            )
            _eq_rows(doc, rows, note)
    doc.blocks.extend(op.sections(d))
    doc.blocks.extend(numbers_at("closed", d))  # NUMBERS: the compact rule evaluated
    doc.h("Proof", 2)
    doc.p(proof_sentence(d, d.proof.sentence))
    doc.blocks.extend(numbers_at("end", d))  # NUMBERS: the kernels give the same arrays
    return doc


def said_in_chain(d: Derivation, k: str) -> bool:
    """Whether the chain rule section printed every entry of ``k``'s gradient exactly as the
    closed form would print it (one list of the same sums is enough)."""
    if "print_as" in d.extra and d.extra["print_as"]:
        return False  # the chain rule prints the expanded form, the closed form the named one
    c, g = d.chain_array(k), d.grad_array(k)
    return g.size <= MAX_ROWS and all(a == b for a, b in zip(c.reshape(-1), g.reshape(-1)))


# said once per document: the worked-problems collection keeps the first and shortens the rest
LAYOUT = (
    r"The Jacobian of the output with respect to each input has shape input shape + "
    r"output shape (the layout of SymPy's \texttt{derive\_by\_array}; PyTorch puts the "
    r"output first): entry $[i, o]$ is $\partial y_o / \partial x_i$."
)
LAYOUT_AGAIN = r"Jacobians in the layout above: input shape + output shape."


def _inner_products(doc, d, k, v) -> bool:
    """The lecture's drawing of the chain rule for a small 2-D input and 2-D output: each
    entry is the inner product of its block of the Jacobian with δ.  False if it does not fit."""
    out = d.output_array.shape
    if v.ndim != 2 or len(out) != 2 or max(v.shape) > 4 or max(out) > 3 or "print_as" in d.extra:
        return False
    J = d.jacobian_array(k)
    if max(len(tex(e)) for e in J.reshape(-1)) > 24:
        return False
    doc.p(
        f"For ${tex_name(k)}$, entry by entry: the inner product of the block of the Jacobian at "
        r"that position with $\delta$ (the sum of their entrywise products):"
    )
    name = tex_name(k)
    doc.eq(
        [
            (
                r"\frac{\partial L}{\partial " + indexed(name, idx) + "}",
                [
                    r"\left\langle "
                    + bmatrix(J[idx])
                    + ", "
                    + bmatrix(d.upstream_array)
                    + r" \right\rangle = "
                    + tex(d.chain_array(k)[idx])
                ],
            )
            for idx in np.ndindex(*v.shape)
        ]
    )
    return True


def _local_derivatives(doc, d, k, v, show, loss):
    """The Jacobian with respect to input ``k`` (values ``v``): a block matrix for a 2-D input
    when it is small and its entries short, else its non-zero entries, else a count."""
    J = d.jacobian_array(k)
    name = tex_name(k)
    if loss:
        rows, note = entry_rows(
            lambda idx: r"\frac{\partial L}{\partial " + indexed(name, idx) + "}",
            J.reshape(v.shape),
            show,
        )
        _eq_rows(doc, rows, note)
        return
    if J.size > 400:
        nz = sum(1 for e in J.reshape(-1) if e != 0)
        doc.p(
            f"The Jacobian with respect to ${name}$ has shape {fmt_shape(J.shape)} "
            f"({J.size} entries, {nz} non-zero); it is too large to print, and the chain rule "
            f"below contracts it."
        )
        return
    shown = abbreviate_array(J, d.extra.get("print_as"))
    # a block matrix fits the page for small 2-D inputs and outputs; a plain matrix is
    # abbreviated past MAX_MATRIX_SIDE rows or columns
    blocks_fit = v.ndim != 2 or (max(v.shape) <= 4 and max(d.output_array.shape) <= 4)
    drawable = (
        max(len(tex(e)) for e in shown.reshape(-1)) <= MAX_ENTRY_CHARS
        and blocks_fit
        and v.ndim <= 2
        and d.output_array.ndim <= 2
    )
    if not drawable:
        nonzero = [(idx, e) for idx, e in entries(J, lambda i: i) if e != 0]
        rows = [
            (
                r"\frac{\partial y_{%s}}{\partial %s}"
                % (",".join(str(i + 1) for i in idx[v.ndim :]), indexed(name, idx[: v.ndim])),
                tex_split(show(e)),
            )
            for idx, e in nonzero[:12]
        ]
        zeros = J.size - len(nonzero)
        doc.p(
            f"The non-zero entries of the Jacobian with respect to ${name}$ (shape "
            f"{fmt_shape(J.shape)})" + (f"; the other {zeros} entries are 0:" if zeros else ":")
        )
        _eq_rows(
            doc,
            rows,
            f"(and {len(nonzero) - 12} more non-zero entries, not printed.)"
            if len(nonzero) > 12
            else "",
        )
        return
    if v.ndim == 2:
        doc.p(
            f"With respect to ${name}$ it is drawn as a block matrix: the block at position "
            f"$(i, j)$ holds the derivatives of every output with respect to ${name}_{{i,j}}$."
        )
    c, rest = common_factor(shown)  # average pooling: 1/4 times blocks of 0s and 1s
    doc.eq(
        [
            (
                r"\frac{\partial y}{\partial " + name + "}",
                [
                    ("" if c == 1 else tex(c) + " ")
                    + jacobian_tex(rest, v.shape, d.output_array.shape)
                ],
            )
        ]
    )
    if v.ndim < 2 and abbreviated(shown.reshape(int(np.prod(v.shape)) or 1, -1)):
        doc.p(ABBREVIATED)


def proof_sentence(d: Derivation, how: str) -> str:
    """ "Proved" only when :meth:`Derivation.verify` ran and held; "not verified" otherwise."""
    notes = " (" + "; ".join(n.rstrip(".") for n in d.notes) + ")" if d.notes else ""
    if d.verified:
        return (
            f"For every entry, the closed form equals the chain rule: derivgrad proved it "
            f"symbolically by {how}{notes}."
        )
    return (
        f"Not verified: the symbolic proof was skipped for this document (it would compare "
        f"the closed form with the chain rule entry by entry, by {how}){notes}. Run "
        r"\texttt{d.verify()}, or derive without \texttt{--no-verify}, before relying on it."
    )


def to_latex(doc: Doc, standalone: bool = True, numbered: bool = False) -> str:
    return LatexWriter(numbered).document(doc, standalone)


def to_markdown(doc: Doc) -> str:
    return formats.get("markdown").document(doc)


def to_text(doc: Doc) -> str:
    """Unicode text for a terminal (:mod:`derivgrad.formats.text`): never LaTeX source."""
    return formats.get("text").document(doc)


FORMATS = formats.names()


def render(d: Derivation, fmt: str = "latex", standalone: bool = True) -> str:
    """``d`` in one of :data:`FORMATS` (:mod:`derivgrad.formats`); ``standalone=False`` gives
    a fragment (no preamble, no page around it)."""
    return formats.get(fmt).derivation(d, build, standalone)


def compile_pdf(
    source: str,
    out_pdf: str | os.PathLike[str],
    engine: str = "pdflatex",
    timeout: float = 120,
    overfull: list[str] | None = None,
) -> Path:
    """Compile a standalone document into ``out_pdf`` with ``engine`` (one of
    :func:`derivgrad.formats.engines`, which says the format it reads)."""
    writer = formats.get(formats.engines().get(engine, "latex"))
    return writer.pdf(source, out_pdf, engine, overfull=overfull, timeout=timeout)


register_renderer(render)
