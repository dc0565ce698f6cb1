r"""The document model shared by every op and every output format.

A worked solution is a :class:`Doc`: a list of blocks — headings, paragraphs (prose with
inline ``$...$`` mathematics) and displayed equations (``align*`` rows).  Every formula is
printed from the SymPy object it states by one printer (:func:`tex`), so the text and the
mathematics cannot drift apart.  Ops add their own sections from these pieces
(:meth:`derivgrad.ops.base.Op.sections`); :mod:`derivgrad.documents.render` turns a ``Doc``
into LaTeX, Markdown or text.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import sympy as sp

from ..symbolic.reader import as_expr

# ("h", (level, text)) | ("p", text) | ("eq", [(lhs, [rhs fragments]), ...])
Block = tuple[str, Any]

MAX_TERMS_PER_LINE = 4
MAX_ENTRY_CHARS = 60  # a matrix whose entries print longer than this is listed entry by entry
MAX_LINE_CHARS = 300  # a single term longer than this cannot be broken: summarised instead
LINE_CHARS = 140  # LaTeX characters that fit one displayed line of subscripted math


def tex(e: Any) -> str:
    """LaTeX of one expression: SymPy's printer, products without ``\\cdot`` noise."""
    return sp.latex(e, mul_symbol=None)


def name_tex(name: str) -> str:
    """A user's tensor or index name in mathematics: one letter as itself, a longer name
    upright-italic as written (``\\mathit{x\\_1}``), never read as a subscript or a Greek
    letter."""
    if len(name) == 1 or not name.isidentifier():
        return name
    return r"\mathit{%s}" % name.replace("_", r"\_")


# text (outside $...$) of a document's prose is LaTeX source in which the LaTeX writer itself
# escapes & % # and a bare _ (render._escape); the rest of TeX's specials are made literal here
_TEXT_ESCAPES = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "_": r"\_",
    "^": r"\textasciicircum{}",
    "~": r"\textasciitilde{}",
    # OT1 text fonts have no < or >: they print as ¡ and ¿ ("Linear 2->2" as "2-¿2")
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
_TEXT_UNESCAPES = {v: k for k, v in _TEXT_ESCAPES.items()}
_UNESCAPE = re.compile("|".join(re.escape(v) for v in sorted(_TEXT_UNESCAPES, key=len)[::-1]))


def escape_text(text: str) -> str:
    """User text (a title) as prose source that every format shows as the text itself: no
    LaTeX command runs (``\\input{...}`` prints as written) and no ``$`` opens mathematics."""
    return "".join(_TEXT_ESCAPES.get(c, c) for c in str(text))


def plain_text(source: str) -> str:
    """The text a prose part (outside ``$...$``) stands for: :func:`escape_text` undone."""
    return _UNESCAPE.sub(lambda m: _TEXT_UNESCAPES[m.group(0)], source)


def split_prose(text: str) -> list[str]:
    """Prose split at its ``$`` delimiters (odd parts are mathematics); an escaped ``\\$`` is
    text, not a delimiter."""
    return re.split(r"(?<!\\)\$", text)


def abbreviate(e: Any, print_as: Mapping[Any, Any] | None = None) -> Any:
    """``e`` with named intermediates in place of what they stand for (``print_as``: ``{expr:
    symbol}``), e.g. softmax's ``e^{z_i − lse(z)}`` printed as ``p_i``; an exponential
    ``e^{c·a}`` whose ``e^{a}`` is named prints as the name to the power ``c``."""
    if not print_as or not isinstance(e, sp.Basic):
        return e

    def named_power(a):
        c, base = sp.factor_terms(a.args[0]).as_coeff_Mul()
        sym = print_as.get(sp.exp(base))
        return None if sym is None else sym**c

    e = e.replace(lambda a: isinstance(a, sp.exp) and named_power(a) is not None, named_power)
    e = e.xreplace(print_as)
    # a named sum inside a longer one (SymPy flattens v + ε into one sum): its terms as the name
    sums = [(set(k.args), v) for k, v in print_as.items() if isinstance(k, sp.Add)]
    if not sums:
        return e

    def named_part(a):
        terms = set(a.args)
        for part, name in sums:
            if part < terms:
                return sp.Add(name, *(terms - part))
        return None

    return e.replace(lambda a: isinstance(a, sp.Add) and named_part(a) is not None, named_part)


def abbreviate_array(a: np.ndarray, print_as: Mapping[Any, Any] | None = None) -> np.ndarray:
    """:func:`abbreviate` entry by entry over an object array."""
    if not print_as:
        return a
    return np.vectorize(lambda e: abbreviate(e, print_as), otypes=[object])(a)


def _too_long(e):
    n = len(sp.Add.make_args(e))
    return r"\text{(an expression of %d term%s, too long to print; verify() compares it)}" % (
        n,
        "s" * (n > 1),
    )


def tex_split(e: Any, per_line: int = MAX_TERMS_PER_LINE) -> list[str]:
    """A long sum broken over ``align*`` lines (returns a list of line fragments); an
    expression whose single terms are too long for a line is summarised, not printed."""
    whole = tex(e)
    if len(whole) <= LINE_CHARS:
        return [whole]
    if isinstance(e, sp.Mul):
        # a product with a long sum inside: a line may break only between top-level terms,
        # never inside a parenthesis, so multiply the other factors into the sum's terms
        adds = [f for f in e.args if isinstance(f, sp.Add)]
        if adds:
            A = max(adds, key=lambda f: len(tex(f)))
            rest = sp.Mul(*[f for f in e.args if f is not A])
            return tex_split(sp.Add(*[rest * t for t in A.args], evaluate=False), per_line)
    if not isinstance(e, sp.Add):
        return [whole] if len(whole) <= MAX_LINE_CHARS else [_too_long(e)]
    terms = list(sp.Add.make_args(e))
    terms = sorted(terms, key=sp.default_sort_key)
    lines: list[str] = []
    k = 0
    while k < len(terms):
        # as many terms as fit on a line, at most per_line
        m = 1
        while (
            k + m < len(terms)
            and m < per_line
            and len(tex(sp.Add(*terms[k : k + m + 1], evaluate=False))) <= LINE_CHARS
        ):
            m += 1
        chunk = sp.Add(*terms[k : k + m], evaluate=False)
        s = tex(chunk)
        if len(s) > MAX_LINE_CHARS:
            sub = tex_split(terms[k], per_line) if m == 1 else None
            if not sub or len(sub) == 1:
                return [_too_long(e)]
            lines.extend(
                ("+ " + sub[0] if k and not sub[0].startswith("-") else sub[0],) + tuple(sub[1:])
            )
            k += 1
            continue
        if k and not s.startswith("-"):
            s = "+ " + s
        lines.append(s)
        k += m
    return lines


MAX_MATRIX_SIDE = 6  # rows or columns of a printed matrix; past it, ⋯ / ⋮ / ⋱ stand for the middle


def abbreviated(a: np.ndarray, side: int = MAX_MATRIX_SIDE) -> bool:
    """Whether :func:`bmatrix` prints ``a`` with its middle rows or columns left out."""
    a = np.asarray(a, dtype=object)
    return any(n > side for n in a.shape[:2])


def _keep(n, side=MAX_MATRIX_SIDE):
    # the first side - 2 indices, a gap (None), the last one
    return list(range(n)) if n <= side else [*range(side - 2), None, n - 1]


def bmatrix(a: Any, side: int = MAX_MATRIX_SIDE) -> str:
    """A matrix (a vector prints as a column) as ``bmatrix``; a side longer than ``side``
    (``MAX_MATRIX_SIDE`` unless the caller knows its entries are short) keeps its first
    entries and its last, with ⋯, ⋮ and ⋱ between (the caller says so in the text: see
    :func:`abbreviated` and :func:`abbreviated_note`)."""
    a = np.asarray(a, dtype=object)
    if a.ndim == 1:
        a = a.reshape(-1, 1) if a.shape[0] > 1 else a.reshape(1, 1)
    rows = []
    for i in _keep(a.shape[0], side):
        cells = []
        for j in _keep(a.shape[1], side):
            if i is None:
                cells.append(r"\ddots" if j is None else r"\vdots")
            else:
                cells.append(r"\cdots" if j is None else tex(a[i, j]))
        rows.append(" & ".join(cells))
    return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"


def abbreviated_note(side: int = MAX_MATRIX_SIDE) -> str:
    """The sentence that goes with a matrix :func:`bmatrix` abbreviated past ``side``."""
    return (
        r"The middle rows and columns of matrices with more than %d of them are left out "
        r"($\cdots$, $\vdots$, $\ddots$): they follow the pattern of the entries shown." % side
    )


ABBREVIATED = abbreviated_note()


def common_factor(a: np.ndarray) -> tuple[Any, np.ndarray]:
    """``(c, a / c)`` when every non-zero entry of ``a`` has the same rational coefficient
    ``c`` other than ±1 (average pooling's ``δ/4``: printed ``1/4`` times a matrix of δ, as the
    notes write ``upsample(δ)/K²``); ``(1, a)`` otherwise."""
    coeffs = {as_expr(e).as_coeff_Mul()[0] for e in a.reshape(-1) if e != 0}
    if len(coeffs) != 1:
        return 1, a
    (c,) = coeffs
    if not c.is_Rational or abs(c) == 1:
        return 1, a
    return c, np.vectorize(lambda e: sp.expand(e / c), otypes=[object])(a)


def block_matrix(cells: list[list[str]]) -> str:
    r"""A matrix of LaTeX blocks (each cell a typeset matrix or ``\mathbf{0}``), rows spaced
    so the blocks do not touch: the course's drawing of a Jacobian or a doubly blocked T.

    A row gap ``\\[g]`` of an array only deepens the row's strut, so it must exceed the
    depth of the blocks themselves: a block of r rows reaches about 1.4 r ex below the axis
    (rows 12 pt apart at 10 pt, centred), and ``g`` = 1.4 r ex leaves about 1.5 ex between
    block rows whatever their size."""
    rows = [" & ".join(row) for row in cells]
    ncols = len(cells[0]) if cells else 0
    out = r"\left[\begin{array}{" + "c" * ncols + "} " + (rows[0] if rows else "")
    for above, row in zip(cells, rows[1:]):
        depth = max(cell.count(r"\\") + 1 if "matrix}" in cell else 1 for cell in above)
        out += r" \\[%.1fex] " % (1.4 * depth) + row
    return out + r" \end{array}\right]"


def jacobian_tex(J: np.ndarray, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> str:
    """Input-first Jacobian as a (block) matrix: for a 2-D input, an outer matrix indexed by
    the input position whose blocks are shaped like the output (the course's drawing)."""
    J = np.asarray(J, dtype=object)
    if len(in_shape) == 2:
        outer = np.empty(in_shape, dtype=object)
        for i in itertools.product(*(range(n) for n in in_shape)):
            blk = J[i]
            outer[i] = sp.Symbol(bmatrix(blk if blk.ndim else np.array([blk])))
        return block_matrix([[str(v) for v in row] for row in outer])
    flat = J.reshape(int(np.prod(in_shape)) if in_shape else 1, -1)
    return bmatrix(flat)


def tex_name(k: str) -> str:
    known = {
        "gamma": r"\gamma",
        "beta": r"\beta",
        "W1": r"W^{(1)}",
        "W2": r"W^{(2)}",
        "b1": r"b^{(1)}",
        "b2": r"b^{(2)}",
    }
    return known.get(k) or name_tex(k)


def entries(arr: Any, sym_of: Callable[[tuple[int, ...]], Any]) -> Iterator[tuple[Any, Any]]:
    arr = np.asarray(arr, dtype=object)
    if arr.ndim == 0:
        yield sym_of(()), arr.item()
        return
    for idx in itertools.product(*(range(n) for n in arr.shape)):
        yield sym_of(idx), arr[idx]


MAX_ROWS = 16  # entries printed per gradient; past it, non-zero entries first, the rest counted


def entry_rows(
    lhs: Callable[..., str],
    arr: np.ndarray,
    show: Callable[[Any], Any],
    limit: int = MAX_ROWS,
) -> tuple[list[tuple[str, list[str]]], str]:
    """``(rows, note)`` for the entries of object array ``arr``: every entry in order when they
    fit in ``limit`` rows; otherwise the non-zero entries first (at most ``limit``) and a note
    that says what was left out — never a silent cut.  ``lhs(idx)`` is an entry's LaTeX name."""
    items = list(entries(arr, lambda i: i))
    if len(items) <= limit:
        return [(lhs(idx), tex_split(show(e))) for idx, e in items], ""
    nonzero = [(idx, e) for idx, e in items if e != 0]
    rows = [(lhs(idx), tex_split(show(e))) for idx, e in nonzero[:limit]]
    zeros = len(items) - len(nonzero)
    more = len(nonzero) - len(rows)
    if more and zeros:
        note = f"(and {more} more non-zero entries, not printed; the other {zeros} entries are 0.)"
    elif more:
        note = f"(and {more} more entries, not printed.)"
    else:
        note = f"All other entries ({zeros} of them) are 0." if zeros else ""
    return rows, note


def indexed(base: str, idx: tuple[int, ...]) -> str:
    return base if not idx else f"{base}_{{{','.join(str(i + 1) for i in idx)}}}"


class Doc:
    """A list of (kind, payload) blocks shared by the three output formats."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []

    def h(self, text: str, level: int = 1) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def eq(self, lines: list[tuple[str, list[str]]]) -> None:
        """``lines``: list of (lhs, [rhs fragments]); one align* block."""
        self.blocks.append(("eq", lines))


def has_upstream(d: Any) -> bool:
    return any(isinstance(s, sp.Symbol) for s in np.asarray(d.upstream_array).reshape(-1))


def fmt_param(v: Any, key: str = "") -> str:
    """Sizes print as a×b; a hyper-parameter equal on both axes prints as one number."""
    if isinstance(v, tuple):
        if key not in ("input", "kernel") and len(set(v)) == 1:
            return str(v[0])
        return "×".join(map(str, v))
    return str(v)


def fmt_shape(s: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, s)) + ")" if s else "()"


_RULE_TEX = [
    ("⋆", r"\star "),
    ("ᵀ", r"^\top "),
    ("⊙", r"\odot "),
    ("Σ", r"\sum "),
    ("δ", r"\delta "),
    ("γ", r"\gamma "),
    ("σ²", r"\sigma^2 "),
    ("ε", r"\epsilon "),
    ("√", r"\sqrt"),
    ("x̂", r"\hat x "),
    ("∈", r"\in "),
    ("∋", r"\ni "),
    ("∇", r"\nabla "),
    ("∂", r"\partial "),
    ("−", "-"),
    ("⟨", r"\langle "),
    ("⟩", r"\rangle "),
    ("β", r"\beta "),
    ("1[", r"\mathbf{1}["),
]


def rule_tex(rule: str) -> str:
    """A rule from ``Derivation.rules`` (Unicode) as inline LaTeX: the formula in math mode,
    a trailing explanation (after a comma or in parentheses) as text."""
    m = re.match(r"^(.*?)(?:,\s*|\s+\()((?:summed|routed|for|each|spread|with|the).*?)\)?$", rule)
    head, tail = (m.group(1), m.group(2)) if m else (rule, "")
    head = head.replace("√(σ²+ε)", r"\sqrt{\sigma^2+\epsilon}").replace("·", r"\cdot ")
    head = re.sub(r"\bd([Wb])([12])\b", r"d\1^{(\2)}", head)  # dW2 = ...: a layer's gradient
    head = re.sub(r"\bdw\b", r"\\mathrm{d}w", head)
    head = re.sub(r"\bW([12])ᵀ", r"W^{(\1)\\top}", head)
    head = re.sub(r"\bW([12])", r"W^{(\1)}", head)
    for a, b in _RULE_TEX:
        head = head.replace(a, b)
    head = re.sub(
        r"\b(crop|pad|dilate|rot180|reshape|mean)_([a-z])\(", r"\\operatorname{\1}_{\2}(", head
    )
    head = re.sub(
        r"\b(crop|pad|dilate|rot180|flip|reshape|mean|diag|relu)\(", r"\\operatorname{\1}(", head
    )
    head = re.sub(r"\bargmax_([a-z])", r"\\operatorname{argmax}_{\1}", head)
    head = re.sub(r"_(?!\{)([A-Za-z0-9]+)", r"_{\1}", head)
    head = (
        head.replace("dX", r"\mathrm{d}X")
        .replace("dW", r"\mathrm{d}W")
        .replace("db", r"\mathrm{d}b")
    )
    out = f"${head.strip()}$"
    if tail:
        t = tail
        for a, b in _RULE_TEX:
            t = t.replace(a, f"${b.strip()}$")
        t = re.sub(r"\b([a-z]) \$\\ni\$ ([a-z])\b", r"$\1 \\ni \2$", t)
        # a one-letter quantity named in the prose is mathematics too ("stride $d$")
        t = re.sub(r"\b(stride|dilation|padding|window) ([a-z])\b", r"\1 $\2$", t)
        t = re.sub(r"\b([a-z]) = ([a-z])\(([a-z]) \$-\$ 1\)", r"$\1 = \2(\3 - 1)$", t)
        t = re.sub(r"(?<![\w$\\(])([qrX])(?![\w$(])", r"$\1$", t)  # q, r, X named in prose
        t = t.replace("$q$ + $r$", "$q + r$")
        out += f", {t}"
    return out
