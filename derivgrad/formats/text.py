r"""A worked solution as Unicode text for an 80-column terminal: ``∂L/∂w₁₁``, ``Σ``, ``δ``,
sub- and superscripts, matrices drawn with box characters (``⎡ ⎤``, as SymPy's pretty
printer draws them); never LaTeX source.

The formulas are read from the same LaTeX the other formats print (the subset derivgrad's
one printer, :func:`derivgrad.documents.document.tex`, writes) into a small tree and laid out in 2-D
boxes.  Wide content is never cut mid-symbol: a long line breaks before a ``+``, ``−`` or
``=``; a matrix wider than the page is shown row by row (or block by block) with a note.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from dataclasses import dataclass

from ..documents.document import Doc, plain_text, split_prose
from . import Writer

WIDTH = 80

SYMBOLS = {
    "partial": "∂", "delta": "δ", "Delta": "Δ", "sum": "Σ", "prod": "Π", "cdot": "·",
    "star": "⋆", "odot": "⊙", "otimes": "⊗", "times": "×", "top": "ᵀ", "alpha": "α",
    "beta": "β", "gamma": "γ", "sigma": "σ", "mu": "μ", "epsilon": "ε", "varepsilon": "ε",
    "lambda": "λ", "eta": "η", "theta": "θ", "pi": "π", "tau": "τ", "phi": "φ", "nabla": "∇",
    "in": "∈", "ni": "∋", "notin": "∉", "leq": "≤", "le": "≤", "geq": "≥", "ge": "≥",
    "neq": "≠", "ne": "≠", "approx": "≈", "to": "→", "rightarrow": "→", "mapsto": "↦",
    "infty": "∞", "mid": "∣", "ldots": "…", "cdots": "⋯", "dots": "…", "langle": "⟨",
    "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉", "max": "max",
    "min": "min", "log": "log", "exp": "exp", "ln": "ln", "quad": "  ", "qquad": "    ",
    "{": "{", "}": "}", "_": "_", "%": "%", "&": "&", "#": "#", ",": " ", ";": " ", ":": " ",
    "!": "", " ": " ", "|": "‖", "vert": "|", "Vert": "‖", "pm": "±", "circ": "∘",
    "forall": "∀", "exists": "∃", "cap": "∩", "cup": "∪", "setminus": "∖", "ell": "ℓ",
    "wedge": "∧", "vdots": "⋮", "ddots": "⋱",
}  # fmt: skip
SIZES = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr",
         "displaystyle", "limits", "nolimits", "mathop"}  # fmt: skip
ONE_ARG = {"text", "texttt", "mathrm", "mathbf", "mathit", "operatorname", "mathbb", "hat",
           "bar", "tilde", "vec", "sqrt", "mathcal", "boldsymbol", "textbf"}  # fmt: skip
BLACKBOARD = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "Q": "ℚ", "C": "ℂ"}
SUP = dict(zip("0123456789+-−=()ᵀT", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ᵀᵀ"))
SUP.update(zip("abcdefghijklmnoprstuvwxyz", "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻ"))
SUB = dict(zip("0123456789+-−=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ"))

_TOKEN = re.compile(r"\\[A-Za-z]+|\\\\(?:\[[^\]]*\])?|\\.|[{}^_&]|\s+|.", re.S)


def width(s: str) -> int:
    """Columns a string takes (combining accents take none)."""
    return sum(0 if unicodedata.combining(c) else 1 for c in s)


# -- a 2-D box: lines of equal width and the line the text runs along ------------------------
@dataclass
class Box:
    lines: list[str]
    base: int = 0

    @property
    def w(self) -> int:
        return max((width(line) for line in self.lines), default=0)

    def pad(self) -> Box:
        w = self.w
        return Box([line + " " * (w - width(line)) for line in self.lines], self.base)

    def flat(self) -> bool:
        return len(self.lines) == 1


def hcat(boxes: list[Box]) -> Box:
    boxes = [b.pad() for b in boxes if b.lines and b.w]
    if not boxes:
        return Box([""])
    above = max(b.base for b in boxes)
    below = max(len(b.lines) - b.base for b in boxes)
    lines = [""] * (above + below)
    for b in boxes:
        top = above - b.base
        for r in range(above + below):
            k = r - top
            lines[r] += b.lines[k] if 0 <= k < len(b.lines) else " " * b.w
    return Box(lines, above)


def matrix(cells: list[list[Box]]) -> Box:
    """Cells in columns (centred, as SymPy's pretty printer does) between tall brackets."""
    cols = max(len(r) for r in cells)
    cells = [r + [Box([""])] * (cols - len(r)) for r in cells]
    cw = [max(r[j].w for r in cells) for j in range(cols)]
    body: list[str] = []
    for r, row in enumerate(cells):
        h = max(len(c.lines) for c in row)
        for k in range(h):
            parts = []
            for j, c in enumerate(row):
                top = (h - len(c.lines)) // 2
                s = c.pad().lines[k - top] if 0 <= k - top < len(c.lines) else ""
                parts.append(s.center(cw[j] + (len(s) - width(s))))
            body.append("  ".join(parts))
        if r < len(cells) - 1 and h > 1:
            body.append(" " * len(body[-1]))  # a gap between rows of blocks
    if len(body) == 1:
        return Box([f"[{body[0]}]"])
    left = ["⎡"] + ["⎢"] * (len(body) - 2) + ["⎣"]
    right = ["⎤"] + ["⎥"] * (len(body) - 2) + ["⎦"]
    return Box([f"{a}{s}{b}" for a, s, b in zip(left, body, right)], (len(body) - 1) // 2)


# -- LaTeX subset → tree ---------------------------------------------------------------------
def _tokens(latex: str) -> list[str]:
    s = re.sub(r"\\left\[\s*\\begin\{array\}\{[a-z|]*\}", r"\\begin{bmatrix}", latex)
    s = re.sub(r"\\end\{array\}\s*\\right\]", r"\\end{bmatrix}", s)
    return _TOKEN.findall(s)


class _Parser:
    """LaTeX → a small tree: ``("t", text)``, ``("g", nodes)``, ``("^" | "_", nodes)``,
    ``("frac", num, den)``, ``("cmd", name, nodes)``, ``("m", rows of cells)``.  ``keep``:
    a command's name and a ``\\\\`` stay as they are (``"\\partial"``), for a writer with
    its own names for them (:mod:`.typst`); else a command is its Unicode symbol."""

    def __init__(self, latex: str, keep: bool = False):
        self.t = _tokens(latex)
        self.i = 0
        self.keep = keep

    def peek(self) -> str:
        """The next token, ``""`` at the end."""
        return self.t[self.i] if self.i < len(self.t) else ""

    def next(self) -> str:
        tok = self.t[self.i]
        self.i += 1
        return tok

    def arg(self) -> list:
        while self.peek().isspace():
            self.i += 1
        if self.peek() == "{":
            self.i += 1
            return self.seq("}")
        if not self.peek():
            return []
        return self.seq(None, one=True)

    def seq(self, close: str | None, one: bool = False) -> list:
        out: list = []
        while self.peek():
            tok = self.peek()
            if close is not None and tok == close:
                self.i += 1
                return out
            if tok == "}" or (close == "env" and (tok in ("&",) or tok.startswith("\\\\"))):
                return out
            if close == "env" and tok == "\\end":
                return out
            self.i += 1
            if tok == "{":
                out.append(("g", self.seq("}")))
            elif tok in ("^", "_"):
                out.append((tok, self.arg()))
            elif tok == "\\begin":
                name = "".join(x[1] for x in self.arg() if x[0] == "t")
                if self.peek() == "{" and name == "array":
                    self.arg()  # the column spec
                out.append(("m", self.rows()))
            elif tok.startswith("\\\\"):
                out.append(("t", "\\\\" if self.keep else " "))
            elif tok.startswith("\\") and len(tok) > 1:
                name = tok[1:]
                if name == "frac":
                    out.append(("frac", self.arg(), self.arg()))
                elif name in ONE_ARG:
                    if name == "sqrt" and self.peek() == "[":
                        while self.next() != "]":
                            pass
                    out.append(("cmd", name, self.arg()))
                elif name in SIZES:
                    continue
                else:
                    out.append(("t", tok if self.keep else SYMBOLS.get(name, name)))
            elif tok.isspace():
                out.append(("t", " "))
            else:
                out.append(("t", tok))
            if one:
                return out
        return out

    def rows(self) -> list[list[list]]:
        rows: list[list[list]] = [[]]
        while self.peek():
            cell = self.seq("env")
            tok = self.peek()
            rows[-1].append(cell)
            if not tok:
                break
            self.i += 1
            if tok == "&":
                continue
            if tok.startswith("\\\\"):
                rows.append([])
                continue
            if tok == "\\end":
                self.arg()
                break
        if rows and rows[-1] in ([], [[]]):
            rows.pop()
        return rows


# -- tree → boxes ----------------------------------------------------------------------------
def _script(text: str, table: dict[str, str]) -> str | None:
    t = text.replace(" ", "")
    if table is SUB and t.count(",") > 1:
        return None  # x_{2,1,1,2}: x₂₁₁₂ reads as one number, x_(2,1,1,2) does not
    if table is SUB and re.fullmatch(r"\d,\d", t):
        t = t.replace(",", "")  # w_{1,1} → w₁₁, as the notes write it
    if t and all(c in table for c in t):
        return "".join(table[c] for c in t)
    if table is SUB and re.fullmatch(r"[0-9,]+", t) and all(c in table or c == "," for c in t):
        return "".join(table.get(c, ",") for c in t)
    return None


def _compound(s: str) -> bool:
    return bool(re.search(r"[\s+−\-=/·]", s.strip()))


def layout(nodes: list) -> Box:
    boxes: list[Box] = []
    for node in nodes:
        kind = node[0]
        if kind == "t":
            s = node[1]
            boxes.append(Box(["−" if s == "-" else s]))
        elif kind == "g":
            boxes.append(layout(node[1]))
        elif kind in ("^", "_"):
            while boxes and boxes[-1].flat() and not boxes[-1].lines[0].strip():
                boxes.pop()  # "\delta _y": a script belongs to what precedes the space
            inner = layout(node[1])
            s = linear(inner)
            table = SUP if kind == "^" else SUB
            fancy = _script(s, table) if inner.flat() else None
            if fancy is None:
                fancy = ("^" if kind == "^" else "_") + (f"({s})" if width(s) > 1 else s)
            if fancy.startswith("^") and boxes and boxes[-1].lines == ["e"]:
                boxes[-1] = Box(["exp"])  # e^(a long exponent) reads better as exp(...)
                fancy = f"({s})"
            boxes.append(Box([fancy]))
        elif kind == "frac":
            num, den = linear(layout(node[1])), linear(layout(node[2]))
            num = f"({num})" if _compound(num) and not num.startswith("∂") else num
            den = f"({den})" if _compound(den) and not den.startswith("∂") else den
            boxes.append(Box([f"{num}/{den}"]))
        elif kind == "cmd":
            name, arg = node[1], layout(node[2])
            s = linear(arg)
            if name == "mathbb":
                s = "".join(BLACKBOARD.get(c, c) for c in s)
            elif name == "hat":
                s = s + "\u0302"
            elif name == "bar":
                s = s + "\u0304"
            elif name == "sqrt":
                s = "√" + (f"({s})" if _compound(s) or width(s) > 1 else s)
            elif name == "mathbf" and s == "1":
                s = "𝟏"
            boxes.append(Box([s]) if arg.flat() or name != "text" else arg)
        elif kind == "m":
            boxes.append(matrix([[layout(c) for c in row] for row in node[1]]))
    box = hcat(boxes)
    if box.flat():
        box = Box([_tidy(box.lines[0])])
    return box


def _tidy(s: str) -> str:
    s = re.sub(r"\s*·\s*", "·", s)
    s = re.sub(r"∂\s+", "∂", s)
    s = re.sub(r"(^|[(\[])− ", r"\1−", s)  # a unary minus sits on its number
    s = re.sub(r"(?<=[(\[]) +| +(?=[)\]])", "", s)
    return re.sub(r"  +", " ", s).strip()


def linear(box: Box) -> str:
    """A box on one line (a matrix as nested brackets, for prose and scripts)."""
    if box.flat():
        return box.lines[0]
    return " ".join(line.strip() for line in box.lines)


def math(latex: str) -> Box:
    """One LaTeX formula laid out as a Unicode box."""
    return layout(_Parser(latex).seq(None))


def inline(latex: str) -> str:
    """A formula inside a sentence: one line; a matrix written as rows ``[a, b; c, d]``."""
    nodes = _Parser(latex).seq(None)

    def flatten(ns: list) -> list:
        out: list = []
        for n in ns:
            if n[0] == "m":
                rows = ["; ".join(", ".join(linear(layout(c)) for c in row) for row in [r])
                        for r in n[1]]  # fmt: skip
                out.append(("t", "[" + "; ".join(rows) + "]"))
            elif n[0] == "g":
                out.append(("g", flatten(n[1])))
            else:
                out.append(n)
        return out

    return linear(layout(flatten(nodes)))


# -- wrapping --------------------------------------------------------------------------------
_OPEN, _CLOSE = "([{⟨", ")]}⟩"


def _split_at_depth(s: str, depth: int) -> list[str]:
    """``s`` cut before each `` + ``, `` − `` or `` = `` that sits inside exactly ``depth``
    brackets (0: between top-level terms)."""
    pieces, start, level = [], 0, 0
    for i, ch in enumerate(s):
        if ch in _OPEN:
            level += 1
        elif ch in _CLOSE:
            level -= 1
        elif (
            ch == " "
            and level == depth
            and s[i + 1 : i + 3] in ("+ ", "− ", "= ")
            and s[start:i].strip()  # not in the indentation
        ):
            pieces.append(s[start:i])
            start = i + 1
    pieces.append(s[start:])
    return pieces


def wrap_math(s: str, indent: int, limit: int = WIDTH) -> list[str]:
    """A one-line formula broken before a top-level ``+``, ``−`` or ``=`` — never inside a
    parenthesis or a symbol; continuation lines indented past the left side.  Only a single
    term wider than the whole line is broken inside its brackets (at the shallowest level),
    its continuation indented under the bracket it continues."""
    if width(s) <= limit:
        return [s]
    pieces = _split_at_depth(s, 0)
    lines: list[str] = []
    cur = ""
    for p in pieces:
        cand = p if not cur else f"{cur} {p}"
        # the left side stays with the first term ("∂L/∂x = …"), however wide that term
        keep_lhs = not lines and p.startswith("= ") and "=" not in cur
        if cur and not keep_lhs and width(cand) > (limit if not lines else limit - indent):
            lines.append(cur)
            cur = p
        else:
            cur = cand
    lines.append(cur)
    out: list[str] = []
    for k, line in enumerate(lines):
        lead = "" if k == 0 else " " * indent
        if width(lead + line) > limit:  # one term wider than the page
            out.extend(_wrap_term(lead + line, limit))
        else:
            out.append(lead + line)
    return out


def _wrap_term(s: str, limit: int) -> list[str]:
    """One term wider than the page, broken at the shallowest bracket level that has a
    ``+``/``−`` to break at, continuations under the opening bracket; else at spaces."""
    for depth in range(1, 4):
        pieces = _split_at_depth(s, depth)
        if len(pieces) == 1:
            continue
        # the column just past the bracket these pieces sit in
        level, col = 0, 0
        for i, ch in enumerate(pieces[0]):
            if ch in _OPEN:
                level += 1
                if level == depth:
                    col = width(pieces[0][: i + 1])
            elif ch in _CLOSE:
                level -= 1
        if col > limit // 2:
            continue
        out = [pieces[0]]
        for p in pieces[1:]:
            cand = f"{out[-1]} {p}"
            if width(cand) <= limit:
                out[-1] = cand
            else:
                out.append(" " * col + p)
        if all(width(line) <= limit for line in out):
            return out
    return textwrap.wrap(s, limit, subsequent_indent="      ")


def _too_wide(box: Box, indent: int) -> list[str]:
    """A matrix wider than the page: its rows (or blocks) one after another, with a note."""
    out = [
        " " * indent + f"(a matrix {box.w} columns wide, shown row by row to fit {WIDTH} columns)"
    ]
    text = " ".join(line.strip() for line in box.lines)
    out.extend(" " * indent + x for x in textwrap.wrap(text, WIDTH - indent))
    return out


def _equation(lhs: str, frags: list[str]) -> list[str]:
    # a formula's own LaTeX, matrices included, is laid out once, as a whole
    nodes = _Parser(frags[0]).seq(None)
    left = math(lhs)
    if len(frags) == 1 and any(n[0] == "m" for n in nodes):
        rows = _matrix_rows(lhs, nodes)
        if rows is not None:
            return rows
    first = linear(left) + " = "
    out: list[str] = []
    for k, f in enumerate(frags):
        s = (first if k == 0 else " " * 4) + linear(math(f))
        out.extend(wrap_math("  " + s, indent=6))
    return out


def _matrix_rows(lhs: str, nodes: list) -> list[str] | None:
    box = hcat([math(lhs), Box([" = "]), layout(nodes)])
    if box.w + 2 <= WIDTH:
        return ["  " + line.rstrip() for line in box.pad().lines]
    # too wide: a block matrix block by block, a matrix of numbers row by row
    m = next(n for n in nodes if n[0] == "m")
    out = [f"  {linear(math(lhs))} = (too wide for {WIDTH} columns: shown row by row)"]
    gap = None  # the row of ⋮ that an abbreviated matrix prints for its middle rows
    for r, row in enumerate(m[1]):
        if all(linear(layout(c)).strip() in ("⋮", "⋱") for c in row):
            gap = r
            out.append("    ⋮")
            continue
        # after the gap the printed rows are the matrix's last (document.bmatrix keeps one)
        label = f"row {r + 1}" if gap is None else "last row"
        cells = [layout(c) for c in row]
        line_box = hcat([Box([f"    {label}: "]), matrix([cells])])
        if line_box.w <= WIDTH:
            out.extend(line.rstrip() for line in line_box.pad().lines)
            continue
        for j, c in enumerate(cells):
            b = hcat([Box([f"    ({label}, column {j + 1}): "]), c])
            if b.w <= WIDTH:
                out.extend(line.rstrip() for line in b.pad().lines)
            else:
                out.extend(_too_wide(c, 6))
    return out


def _prose(text: str) -> str:
    parts = split_prose(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(inline(part))
        else:
            t = plain_text(re.sub(r"\\texttt\{(.*?)\}", r"\1", part))
            out.append(t)
    return "".join(out)


class TextWriter(Writer):
    name = "text"
    extensions = (".txt",)
    joiner = "\n"

    def visit_h(self, x: tuple[int, str]) -> str:
        level, text = x
        t = _prose(text)
        return "\n".join(["", t, ("=" if level == 1 else "-") * min(width(t), WIDTH)])

    def visit_p(self, x: str) -> str:
        return "\n".join(textwrap.wrap(_prose(x), WIDTH, break_on_hyphens=False) + [""])

    def visit_eq(self, x: list[tuple[str, list[str]]]) -> str:
        out: list[str] = []
        for lhs, frags in x:
            out.extend(_equation(lhs, frags))
        return "\n".join(out + [""])

    def document(self, doc: Doc, standalone: bool = True) -> str:
        return self.body(doc).strip("\n") + "\n"


def to_text(doc: Doc) -> str:
    """The document as Unicode text, every line at most 80 columns."""
    return TextWriter().document(doc)


WRITER = TextWriter
