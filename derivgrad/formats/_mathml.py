r"""LaTeX → MathML with ``latex2mathml``: the same LaTeX source the ``.tex`` output prints,
so the browser and the PDF show one set of formulas.

A few spellings that TeX understands and the converter does not are rewritten first (the
``\\[2.2ex]`` row gap of block matrices, ``\operatorname`` names with digits); nothing else
is hand-translated.
"""

from __future__ import annotations

import re

from latex2mathml.converter import convert

_MATH_OPEN = re.compile(r"^<math[^>]*>")


def _prepare(latex: str) -> str:
    s = re.sub(r"\\\\\[[0-9.]+[a-z]{2}\]", r"\\\\", latex)  # row gaps: layout only
    # \operatorname{rot180} would print as the italic letters r, o, t: an upright name instead
    s = re.sub(r"\\operatorname\{([A-Za-z0-9]+)\}", r"\\mathop{\\text{\1}}", s)
    return s


def mathml(latex: str, display: bool = False) -> str:
    """One ``<math>`` element for a LaTeX formula (inline, or ``display="block"``)."""
    return convert(_prepare(latex), display="block" if display else "inline")


def inner(latex: str) -> str:
    """The converted formula without its ``<math>`` wrapper, to place inside a table cell."""
    m = mathml(latex)
    return _MATH_OPEN.sub("", m)[: -len("</math>")]


def aligned(rows: list[tuple[str, list[str]]]) -> str:
    """``align*`` rows ``(lhs, [fragments])`` as one block ``<math>`` holding an ``<mtable>``:
    the left sides right-aligned, ``=`` and the right sides left-aligned, continuation
    fragments on lines of their own (what ``&=`` and ``\\`` do in TeX)."""
    trs = []
    for lhs, frags in rows:
        for k, frag in enumerate(frags):
            left = inner(lhs) if k == 0 else ""
            rel = "<mo>=</mo>" if k == 0 else '<mspace width="2em"/>'
            trs.append(
                f'<mtr><mtd columnalign="right">{left}</mtd>'
                f'<mtd columnalign="left">{rel}{inner(frag)}</mtd></mtr>'
            )
    return (
        '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">'
        '<mtable columnspacing="0.3em" rowspacing="0.6em">' + "".join(trs) + "</mtable></math>"
    )
