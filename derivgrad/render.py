r"""Worked solutions from derivations: LaTeX (standalone or fragment), Markdown, text.

A document follows the course's order: the problem, the forward pass in scalar form, the
local derivatives (4-D Jacobians as block matrices, input-first layout), the chain rule as
a contraction with the upstream gradient δ, the closed form, and the compact rule with
what :meth:`Derivation.verify` proved.  Every formula is printed from the SymPy object it
states, by one printer (:func:`tex`), so text and mathematics cannot drift apart.
"""

from __future__ import annotations

import re

from .document import (
    MAX_ENTRY_CHARS,
    Doc,
    bmatrix,
    entries,
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
from .numeric_steps import at as numbers_at
from .registry import get
from .symbolic.derivation import Derivation, register_renderer


def build(d: Derivation) -> Doc:
    """The worked solution of derivation ``d`` as a :class:`Doc`: the op's own document if
    it has one (a network), else the generic steps with the op's own sections inserted."""
    op = get(d.op)
    whole = op.document(d)
    if whole is not None:
        whole.blocks.extend(numbers_at("whole", d))  # NUMBERS: a numeric instance, appended
        return whole
    doc = Doc()
    title = op.title
    probs = (
        f" (worked problem{'s' if ',' in op.problems else ''} {op.problems})" if op.problems else ""
    )
    doc.h(f"{title}: the gradient, derived{probs}")
    params = ", ".join(f"{k} = {fmt_param(v, k)}" for k, v in d.params.items() if v is not None)
    shapes = "; ".join(
        f"${tex_name(k)}$ of shape {fmt_shape(v.shape)}" for k, v in d.input_arrays.items()
    )
    doc.p(
        f"Problem. For the {title[0].lower() + title[1:] if title[1:2].islower() else title} with "
        f"{params}, inputs {shapes}, derive the gradient of the "
        f"loss $L$ with respect to every input, given the upstream gradient "
        + (
            r"$\delta = \partial L / \partial y$."
            if has_upstream(d)
            else "(the output is the loss itself)."
        )
        + " Indices are 1-based, as in the course notes."
    )
    doc.blocks.extend(numbers_at("problem", d))  # NUMBERS: the given values
    # forward
    doc.h("Forward pass in scalar form", 2)
    out_name = "L" if not has_upstream(d) else "y"
    lines = [
        (indexed(out_name, idx) if has_upstream(d) else "L", tex_split(e))
        for idx, e in entries(d.output_array, lambda i: i)
    ]
    doc.p("Each output is a scalar expression of the named inputs:")
    doc.eq(lines[:24])
    if len(lines) > 24:
        doc.p(f"(and {len(lines) - 24} more entries of the same form).")
    doc.blocks.extend(numbers_at("forward", d))  # NUMBERS: forward outputs
    # local derivatives
    doc.h("Local derivatives", 2)
    doc.p(
        r"The Jacobian of the output with respect to each input has shape input shape + output "
        r"shape "
        r"(the layout of SymPy's \texttt{derive\_by\_array}; PyTorch puts the output first): "
        r"entry $[i, o]$ is "
        r"$\partial y_o / \partial x_i$."
        + (
            " For a 2-D input it is drawn as a block matrix: "
            "the block at position $(i, j)$ holds the derivatives of "
            "every output with respect to $x_{i,j}$."
            if any(v.ndim == 2 for v in d.input_arrays.values())
            else ""
        )
    )
    for k, v in d.input_arrays.items():
        J = d.jacobian_array(k)
        if max(len(tex(e)) for e in J.reshape(-1)) > MAX_ENTRY_CHARS and J.size <= 400:
            nz = [
                (
                    r"\frac{\partial y_{%s}}{\partial %s}"
                    % (
                        ",".join(str(i + 1) for i in idx[v.ndim :]) or "",
                        indexed(tex_name(k), idx[: v.ndim]),
                    ),
                    tex_split(e),
                )
                for idx, e in entries(J, lambda i: i)
                if e != 0
            ]
            doc.p(
                f"The non-zero entries of the Jacobian with respect to ${tex_name(k)}$ (shape "
                f"{fmt_shape(J.shape)}):"
            )
            doc.eq(nz[:12])
            if len(nz) > 12:
                doc.p(f"(and {len(nz) - 12} more non-zero entries.)")
            continue
        if J.size > 400:
            doc.p(
                f"The Jacobian with respect to ${tex_name(k)}$ has shape {fmt_shape(J.shape)} "
                f"({J.size} entries, {sum(1 for e in J.reshape(-1) if e != 0)} non-zero); it is "
                f"too "
                f"large to print, and the chain rule below contracts it."
            )
            continue
        doc.eq(
            [
                (
                    r"\frac{\partial y}{\partial " + tex_name(k) + "}",
                    [jacobian_tex(J, v.shape, d.output_array.shape)],
                )
            ]
        )
    doc.blocks.extend(numbers_at("local", d))  # NUMBERS: local derivatives
    # chain rule
    doc.h("Chain rule", 2)
    if has_upstream(d):
        doc.p(
            r"The gradient is the Jacobian contracted with the upstream gradient: "
            r"$\frac{\partial L}{\partial x_i} = \sum_o \frac{\partial y_o}{\partial "
            r"x_i}\,\delta_o$."
        )
    else:
        doc.p(r"The output is the loss, so the gradient is the Jacobian itself.")
    for k in d.input_arrays:
        ch = d.chain_array(k)
        rows = [
            (r"\frac{\partial L}{\partial " + indexed(tex_name(k), idx) + "}", tex_split(e))
            for idx, e in entries(ch, lambda i: i)
        ]
        doc.eq(rows[:16])
        if len(rows) > 16:
            doc.p(f"(and {len(rows) - 16} more entries.)")
    doc.blocks.extend(numbers_at("chain", d))  # NUMBERS: each sum written out
    # closed form
    doc.h("Closed form", 2)
    for k in d.grad_names:
        rule = d.rules.get(k, "")
        doc.p(f"Rule for ${tex_name(k)}$: {rule_tex(rule)}.")
        g = d.grad_array(k)
        if (
            g.ndim == 2
            and g.size <= 36
            and max(len(tex(e)) for e in g.reshape(-1)) <= MAX_ENTRY_CHARS
        ):
            doc.eq([(r"\frac{\partial L}{\partial " + tex_name(k) + "}", [bmatrix(g)])])
        else:
            rows = [
                (r"\frac{\partial L}{\partial " + indexed(tex_name(k), idx) + "}", tex_split(e))
                for idx, e in entries(g, lambda i: i)
            ]
            doc.eq(rows[:16])
    doc.blocks.extend(op.sections(d))
    doc.blocks.extend(numbers_at("closed", d))  # NUMBERS: the compact rule evaluated
    doc.h("Proof", 2)
    how = {
        "expand": "expanding the difference of the two to a polynomial that is identically zero",
        "rational": r"writing every $e^{a}$ as a positive symbol and cancelling the difference, a "
        "rational "
        r"function, to zero",
        "radical": r"writing $\sqrt{\sigma^2 + \epsilon}$ as a positive symbol $S$ (the chain rule "
        r"differentiates $\sigma^2$ explicitly) and expanding the numerator of the difference "
        r"to zero",
    }.get(d.proof, d.proof)
    doc.p(
        f"For every entry, the closed form equals the chain rule: derivgrad proved it "
        f"symbolically by {how}" + (" (" + "; ".join(d.notes) + ")" if d.notes else "") + "."
    )
    doc.blocks.extend(numbers_at("end", d))  # NUMBERS: the kernels give the same arrays
    return doc


PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\setcounter{MaxMatrixCols}{40}
% Unicode that prose may carry (math is always printed as LaTeX)
\DeclareUnicodeCharacter{221E}{\ensuremath{\infty}}
\DeclareUnicodeCharacter{2212}{\ensuremath{-}}
\DeclareUnicodeCharacter{2208}{\ensuremath{\in}}
\DeclareUnicodeCharacter{220B}{\ensuremath{\ni}}
\DeclareUnicodeCharacter{00B7}{\ensuremath{\cdot}}
\DeclareUnicodeCharacter{00D7}{\ensuremath{\times}}
\DeclareUnicodeCharacter{2192}{\ensuremath{\to}}
\DeclareUnicodeCharacter{2264}{\ensuremath{\leq}}
\DeclareUnicodeCharacter{2265}{\ensuremath{\geq}}
\DeclareUnicodeCharacter{03B4}{\ensuremath{\delta}}
\DeclareUnicodeCharacter{22C6}{\ensuremath{\star}}
\allowdisplaybreaks
"""


def _align_rows(rows):
    """``(lhs, [fragments])`` pairs as align rows, continuation lines indented."""
    return " \\\\\n".join(
        f"{lhs} &= {frags[0]}" + "".join(r" \\ &\quad " + f for f in frags[1:])
        for lhs, frags in rows
    )


def _latex_blocks(doc, numbered=False):
    out = []
    for kind, x in doc.blocks:
        if kind == "h":
            level, text = x
            if numbered and level == 1:
                out.append("\\section{%s}" % _escape(text))
            else:
                out.append(
                    ("\\section*{%s}" if level == 1 else "\\subsection*{%s}") % _escape(text)
                )
        elif kind == "p":
            out.append(_escape_text(x) + "\n")
        else:
            out.append("\\begin{align*}\n" + _align_rows(x) + "\n\\end{align*}")
    return "\n".join(out)


def _escape(t):
    t = re.sub(r"(?<!\\)_", r"\\_", t)
    return t.replace("&", r"\&").replace("%", r"\%").replace("#", r"\#").replace("×", r"$\times$")


def _escape_text(t):
    # text with inline $...$ math: escape only outside math
    parts = t.split("$")
    for i in range(0, len(parts), 2):
        parts[i] = (
            _escape(parts[i])
            .replace("δ", r"$\delta$")
            .replace("−", "-")
            .replace("⋆", r"$\star$")
            .replace("Σ", r"$\sum$")
            .replace("ᵀ", r"$^\top$")
            .replace("→", r"$\to$")
            .replace("·", r"$\cdot$")
            .replace("∈", r"$\in$")
            .replace("≥", r"$\geq$")
            .replace("ε", r"$\epsilon$")
        )
    return "$".join(parts)


def to_latex(doc, standalone=True, numbered=False):
    body = _latex_blocks(doc, numbered)
    if not standalone:
        return body + "\n"
    return PREAMBLE + "\\begin{document}\n" + body + "\n\\end{document}\n"


def _prose_md(t):
    # LaTeX text commands outside math mean nothing on GitHub: code spans and plain text
    t = re.sub(r"\\texttt\{(.*?)\}", lambda m: "`" + m.group(1).replace("\\_", "_") + "`", t)
    parts = t.split("$")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("\\_", "_")
    return "$".join(parts)


def to_markdown(doc):
    out = []
    for kind, x in doc.blocks:
        if kind == "h":
            out.append("#" * x[0] + " " + x[1])
        elif kind == "p":
            out.append(_prose_md(x))
        else:
            out.append("$$\n\\begin{aligned}\n" + _align_rows(x) + "\n\\end{aligned}\n$$")
    return "\n\n".join(out) + "\n"


def to_text(doc):
    """Unicode text for a terminal (:mod:`derivgrad.formats.text`): never LaTeX source."""
    from .formats.text import to_text as unicode_text

    return unicode_text(doc)


FORMATS = ("latex", "markdown", "text", "html", "json")


def render(d, fmt="latex", standalone=True):
    """``d`` in one of :data:`FORMATS`; ``standalone=False`` gives a LaTeX fragment or an
    HTML fragment (no page around it)."""
    if fmt == "json":  # the derivation as data, not a document
        from .formats.json import dumps

        return dumps(d)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose {', '.join(FORMATS)}")
    doc = build(d)
    if fmt == "latex":
        return to_latex(doc, standalone)
    if fmt == "markdown":
        return to_markdown(doc)
    if fmt == "html":
        from .formats.html import fragment, to_html

        return to_html(doc) if standalone else fragment(doc)
    return to_text(doc)


def compile_pdf(tex_source, out_pdf, engine="pdflatex", timeout=120):
    """Compile with a TeX engine into ``out_pdf``; raises ``RuntimeError`` with the log's
    first error, or ``FileNotFoundError`` if no engine is installed."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    exe = shutil.which(engine)
    if exe is None:
        raise FileNotFoundError(
            f"no TeX engine found ({engine}); install one, e.g. "
            f"'apt-get install texlive-latex-base texlive-latex-recommended', "
            f"or write the .tex with -o and compile it elsewhere"
        )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "doc.tex"
        src.write_text(tex_source)
        for _ in range(2):  # twice, for the table of contents
            r = subprocess.run(
                [exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if r.returncode:
                err = next((l for l in r.stdout.splitlines() if l.startswith("!")), "unknown error")
                raise RuntimeError(f"{engine} failed: {err}")
        from .atomic import write_bytes_atomic

        write_bytes_atomic(out_pdf, (Path(tmp) / "doc.pdf").read_bytes())
    return out_pdf


register_renderer(render)
