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
    """One ``<math>`` element for a LaTeX formula (inline, or ``display="block"``), passed
    through :func:`sanitize`."""
    return sanitize(convert(_prepare(latex), display="block" if display else "inline"))


# MathML Core's presentation elements; no annotation-xml (it may hold HTML), no maction
ELEMENTS = frozenset(
    "math mrow mi mn mo ms mtext mspace msub msup msubsup munder mover munderover mfrac "
    "msqrt mroot mstyle merror mpadded mphantom mfenced menclose mtable mtr mtd "
    "mmultiscripts mprescripts none semantics".split()
)
# presentation attributes only: no href, no style, no on*, no class or id
ATTRIBUTES = frozenset(
    "xmlns display mathvariant mathcolor mathbackground mathsize columnalign columnspacing "
    "rowspacing rowalign columnlines rowlines columnspan rowspan frame width height depth "
    "lspace rspace voffset stretchy fence separator separators form movablelimits accent "
    "accentunder linethickness displaystyle scriptlevel minsize maxsize symmetric largeop "
    "notation open close align".split()
)
_PIECE = re.compile(r"<[^<>]*>|[^<]+|<")
_TAG = re.compile(r"<(/?)([A-Za-z][\w.-]*)((?:\s+[\w:.-]+=\"[^\"<>]*\")*)\s*(/?)>$")
_ATTR = re.compile(r'([\w:.-]+)="([^"<>]*)"')
_UNSAFE_VALUE = re.compile(r"url\(|javascript:|expression\(|[\\&]", re.IGNORECASE)
MATHML_NS = "http://www.w3.org/1998/Math/MathML"


def sanitize(markup: str) -> str:
    """MathML with only :data:`ELEMENTS` and :data:`ATTRIBUTES` left as markup: the converter
    copies some LaTeX through (``\\href`` becomes an ``href``, ``\\style`` a ``style``,
    ``\\text{<b>}`` a raw tag); anything else is escaped into visible text or dropped, so a
    formula can neither fetch, link nor run anything."""
    out = []
    for piece in _PIECE.findall(markup):
        if not piece.startswith("<"):
            out.append(piece)
            continue
        m = _TAG.match(piece)
        if m is None or m.group(2) not in ELEMENTS:
            out.append(piece.replace("<", "&lt;").replace(">", "&gt;"))
            continue
        close, name, attrs, empty = m.groups()
        kept = [
            f'{k}="{v}"'
            for k, v in _ATTR.findall(attrs)
            if k in ATTRIBUTES and not _UNSAFE_VALUE.search(v) and (k != "xmlns" or v == MATHML_NS)
        ]
        out.append(f"<{close}{name}{''.join(' ' + a for a in kept)}{empty}>")
    return "".join(out)


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
