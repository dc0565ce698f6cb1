r"""Typst (``--format typst``): a document that the ``typst`` package (``pip install
'derivgrad[pdf]'``: one wheel holding the compiler) turns into a PDF in a fraction of a
second, with no TeX installation.

The formulas are the document model's LaTeX strings, read into the tree of :mod:`.text`'s
parser and written in Typst's math syntax (``frac(a, b)``, ``mat(delim: "[", ...)``,
``sum_(i)``, ``w_(1,1)``); a command without a Typst name fails loudly rather than printing
something else.  Everything that is not mathematics (titles, prose) is data: each markup
character is escaped, so no text of a document runs as Typst code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..documents.document import plain_text
from ..errors import UsageError
from . import Writer
from .text import SYMBOLS, _Parser

#: LaTeX command → Typst math
NAMES = {
    "partial": "partial", "delta": "delta", "Delta": "Delta", "sum": "sum", "prod": "product",
    "cdot": "dot.op", "star": "star.op", "odot": "dot.o", "otimes": "times.o",
    "times": "times", "top": "top", "alpha": "alpha", "beta": "beta", "gamma": "gamma",
    "sigma": "sigma", "mu": "mu", "epsilon": "epsilon.alt", "varepsilon": "epsilon",
    "lambda": "lambda", "eta": "eta", "theta": "theta", "pi": "pi", "tau": "tau",
    "phi": "phi.alt", "varphi": "phi", "nabla": "nabla", "in": "in", "ni": "in.rev",
    "notin": "in.not", "leq": "lt.eq", "le": "lt.eq", "geq": "gt.eq", "ge": "gt.eq",
    "neq": "eq.not", "ne": "eq.not", "approx": "approx", "to": "arrow.r",
    "rightarrow": "arrow.r", "mapsto": "arrow.r.bar", "infty": "infinity", "mid": "divides",
    "ldots": "dots.h", "dots": "dots.h", "cdots": "dots.c", "vdots": "dots.v",
    "ddots": "dots.down", "langle": "chevron.l", "rangle": "chevron.r", "lfloor": "floor.l",
    "rfloor": "floor.r", "lceil": "ceil.l", "rceil": "ceil.r", "quad": "quad",
    "qquad": "wide", ",": "thin", ";": "med", ":": "med", "!": "", " ": "space",
    "{": "\\{", "}": "\\}", "_": "\\_", "%": "%", "&": "\\&", "#": "\\#", "|": "bar.v.double",
    "vert": "bar.v", "Vert": "bar.v.double", "pm": "plus.minus", "circ": "compose",
    "forall": "forall", "exists": "exists", "cap": "inter", "cup": "union",
    "setminus": "without", "ell": "ell", "wedge": "and", "lor": "or", "land": "and",
    "neg": "not", "Gamma": "Gamma", "Sigma": "Sigma", "Pi": "Pi", "omega": "omega",
    "rho": "rho", "xi": "xi", "zeta": "zeta", "kappa": "kappa", "chi": "chi", "psi": "psi",
}  # fmt: skip
#: function names Typst sets upright itself
FUNCTIONS = {"max", "min", "log", "exp", "ln", "sin", "cos", "tan", "sinh", "cosh", "tanh",
             "arg", "det", "lim", "sup", "inf", "sgn"}  # fmt: skip
#: one-argument commands → Typst functions
WRAP = {"mathbf": "bold", "boldsymbol": "bold", "hat": "hat", "bar": "overline",
        "tilde": "tilde", "vec": "arrow", "sqrt": "sqrt", "mathbb": "bb", "mathcal": "cal",
        "mathit": "italic", "mathrm": "upright"}  # fmt: skip
#: Typst math characters that mean something (a comma separates arguments, a slash makes a
#: fraction, a quote starts a string, ...): written escaped, as themselves
_MATH_ESCAPE = set(',;:/"#$&\\@_^`')
#: characters with a meaning in Typst markup (a heading's ``=``, a comment's ``//``, code's
#: ``#``, a list's ``-``): escaped wherever they occur in text
_TEXT_ESCAPE = re.compile(r"([\\#$*_`<>@\[\]~'\"=+\-/])")


class UnknownCommand(UsageError):
    """A LaTeX command this writer has no Typst for."""


def string(s: str) -> str:
    """A Typst string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text(t: str) -> str:
    """Plain text as Typst markup that prints exactly ``t``: every markup character escaped,
    line breaks as spaces, a leading ``1.`` kept from starting a numbered list."""
    t = " ".join(t.split("\n"))
    t = _TEXT_ESCAPE.sub(r"\\\1", t)
    t = re.sub(r"\.(?=\.)", r"\\.", t)  # "..." would print as one character, "…"
    return re.sub(r"^(\s*\d+)\.", r"\1\\.", t)


def _plain(nodes: list) -> str:
    """A ``\\text{...}`` argument as the characters it prints."""
    out = []
    for n in nodes:
        if n[0] == "t":
            tok = n[1]
            out.append(SYMBOLS.get(tok[1:], tok[1:]) if tok.startswith("\\") else tok)
        elif n[0] in ("g", "cmd"):
            out.append(_plain(n[-1]))
    return "".join(out)


class _Math:
    """The parser's tree → Typst math source."""

    def convert(self, nodes: list) -> str:
        pieces: list[str] = []
        loose: list[bool] = []  # a group of several pieces: one base only inside attach()
        for node in nodes:
            kind = node[0]
            if kind in ("^", "_"):
                script = self.convert(node[1])
                base = pieces.pop() if pieces else "zws"
                if loose.pop() if loose else False:
                    base = f"attach({base})"
                pieces.append(f"{base}{kind}({script})")
                loose.append(False)
                continue
            piece = getattr(self, f"node_{kind}")(node)
            if not piece:
                continue
            # one number stays together ("12", "0.5"), a prime on its letter; letters apart:
            # "ab" would be one Typst identifier
            if pieces and (
                piece == "'"
                or (re.fullmatch(r"[0-9.]", piece) and re.fullmatch(r"[0-9.]+", pieces[-1]))
            ):
                pieces[-1] += piece
                continue
            pieces.append(piece)
            loose.append(kind == "g" and " " in piece)
        return " ".join(pieces)

    def node_t(self, node: tuple) -> str | None:
        tok = node[1]
        if tok.isspace():
            return None
        if tok == "\\\\":  # the rows of a sum's limits (\\substack)
            return "\\\n"
        if tok.startswith("\\"):
            name = tok[1:]
            if name in NAMES:
                return NAMES[name]
            if name in FUNCTIONS:
                return name
            raise UnknownCommand(f"no Typst for the LaTeX command \\{name}")
        if tok in _MATH_ESCAPE:
            return "\\" + tok
        if tok == "-":
            return "-"
        return tok

    def node_g(self, node: tuple) -> str:
        return self.convert(node[1])  # invisible in LaTeX, as here

    def node_frac(self, node: tuple) -> str:
        return f"frac({self.convert(node[1]) or 'zws'}, {self.convert(node[2]) or 'zws'})"

    def node_cmd(self, node: tuple) -> str:
        name, arg = node[1], node[2]
        if name in ("text", "textbf", "texttt"):
            s = string(_plain(arg))
            return {"text": f"upright({s})", "textbf": f"bold({s})"}.get(name, f"mono({s})")
        if name == "operatorname":
            return f"op({string(_plain(arg))})"
        if name == "mathrm" and len(_plain(arg)) > 1:
            return f"upright({string(_plain(arg))})"
        if name in WRAP:
            return f"{WRAP[name]}({self.convert(arg) or 'zws'})"
        raise UnknownCommand(f"no Typst for the LaTeX command \\{name}")

    def node_m(self, node: tuple) -> str:
        rows = ["; ".join(", ".join(self.convert(c) or '""' for c in row) for row in [r])
                for r in node[1]]  # fmt: skip
        return 'mat(delim: "[", ' + "; ".join(rows) + ")"


def _substack(latex: str) -> str:
    # \substack{a \\ b}: the rows of a sum's limits, one under the other
    return re.sub(r"\\substack\{", "{", latex)


def math(latex: str) -> str:
    """One LaTeX formula (the subset :func:`derivgrad.documents.document.tex` prints) as Typst
    math."""
    return _Math().convert(_Parser(_substack(latex), keep=True).seq(None))


def prose(t: str) -> str:
    """A paragraph: inline ``$...$`` as Typst math, ``\\texttt`` as raw text, the rest as
    escaped text."""
    parts = t.split("$")
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"${math(part)}$")
            continue
        pieces = re.split(r"\\texttt\{(.*?)\}", part)
        for k, piece in enumerate(pieces):
            # the document model's escapes (documents.document.escape_text) undone: \_, and
            # \textgreater{} for the > that LaTeX's text fonts lack
            piece = plain_text(piece)
            # the semicolon ends the code expression: a "." or "(" after it stays text
            out.append(f"#raw({string(piece)});" if k % 2 else text(piece))
    return "".join(out)


PREAMBLE = """#set document(title: {title}, author: "derivgrad")
#set page(paper: "a4", margin: 2cm)
#set text(size: 11pt)
#set par(justify: false)
// a long derivation breaks across pages, as align* does with allowdisplaybreaks
#show math.equation.where(block: true): set block(breakable: true)
#show math.equation.where(block: true): set align(left)
"""


class TypstWriter(Writer):
    name = "typst"
    extensions = (".typ",)
    engines = ("typst",)

    def visit_h(self, x: tuple[int, str]) -> str:
        level, t = x
        return "=" * level + " " + prose(t)

    def visit_p(self, x: str) -> str:
        return prose(x)

    def visit_eq(self, x: list[tuple[str, list[str]]]) -> str:
        rows = []
        for lhs, frags in x:
            rows.append(f"{math(lhs)} &= {math(frags[0])}")
            rows.extend(f"&quad {math(f)}" for f in frags[1:])
        return "$ " + " \\\n".join(rows) + " $"

    def document(self, doc: Any, standalone: bool = True) -> str:
        if not standalone:
            return self.body(doc) + "\n"
        heads = [x[1] for kind, x in doc.blocks if kind == "h"]
        title = heads[0].split("$")[0].strip() if heads else ""
        return self.standalone(self.body(doc), title or "derivgrad")

    def standalone(self, body: str, title: str = "derivgrad") -> str:
        return PREAMBLE.format(title=string(title)) + "\n" + body + "\n"

    def collection(self, docs: Sequence[Any], title: str) -> str:
        numbered = (
            '#set heading(numbering: (..n) => if n.pos().len() == 1 { numbering("1", ..n) })\n'
        )
        head = (
            numbered
            + f"#align(center, text(17pt)[{text(title)}])\n"
            + "#align(center)[derivgrad]\n#outline(depth: 1)\n#pagebreak()\n"
        )
        body = "\n\n".join(self.body(doc) for doc in docs)
        return self.standalone(head + body, title)

    def engine_available(self, engine: str) -> bool:
        import importlib.util

        return importlib.util.find_spec("typst") is not None

    def pdf(
        self,
        source: str,
        out: str | os.PathLike[str],
        engine: str | None = None,
        overfull: list[str] | None = None,
        timeout: float = 120,
    ) -> Path:
        """Compile with the ``typst`` package into ``out``; ``RuntimeError`` with Typst's
        message, ``FileNotFoundError`` when the package is not installed."""
        try:
            import typst
        except ImportError:
            raise FileNotFoundError(
                "the typst package is not installed: pip install 'derivgrad[pdf]'"
            ) from None
        try:
            pdf = typst.compile(source.encode(), format="pdf")
        except typst.TypstError as e:
            raise RuntimeError(f"typst failed: {str(e).splitlines()[0]}") from None
        from ..atomic import write_output

        write_output(out, pdf, "PDF")
        return Path(out)


WRITER = TypstWriter
