r"""LaTeX: a standalone ``article`` (``amsmath``) or a fragment to paste; compiled to PDF with
pdflatex.  The formulas are the document model's own LaTeX strings, printed as they are."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..documents.document import split_prose
from . import Writer

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


def align_rows(rows: list[tuple[str, list[str]]]) -> str:
    """``(lhs, [fragments])`` pairs as align rows, continuation lines indented."""
    return " \\\\\n".join(
        f"{lhs} &= {frags[0]}" + "".join(r" \\ &\quad " + f for f in frags[1:])
        for lhs, frags in rows
    )


def escape(t: str) -> str:
    t = re.sub(r"(?<!\\)_", r"\\_", t)
    return t.replace("&", r"\&").replace("%", r"\%").replace("#", r"\#").replace("×", r"$\times$")


def escape_text(t: str) -> str:
    # text with inline $...$ math: escape only outside math (an escaped \$ is text)
    parts = split_prose(t)
    for i in range(0, len(parts), 2):
        parts[i] = (
            escape(parts[i])
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


class LatexWriter(Writer):
    name = "latex"
    extensions = (".tex", ".latex")
    engines = ("pdflatex",)
    joiner = "\n"

    def __init__(self, numbered: bool = False) -> None:
        self.numbered = numbered  # numbered sections: a collection's table of contents

    def visit_h(self, x: tuple[int, str]) -> str:
        level, text = x
        if self.numbered and level == 1:
            return "\\section{%s}" % escape(text)
        return ("\\section*{%s}" if level == 1 else "\\subsection*{%s}") % escape(text)

    def visit_p(self, x: str) -> str:
        return escape_text(x) + "\n"

    def visit_eq(self, x: list[tuple[str, list[str]]]) -> str:
        return "\\begin{align*}\n" + align_rows(x) + "\n\\end{align*}"

    def standalone(self, body: str) -> str:
        return PREAMBLE + "\\begin{document}\n" + body + "\n\\end{document}\n"

    def collection(self, docs: Sequence[Any], title: str) -> str:
        self.numbered = True
        body = "\n".join(self.document(doc, standalone=False) for doc in docs)
        return (
            PREAMBLE + f"\\title{{{escape(title)}}}\n\\author{{derivgrad}}\n"
            "\\begin{document}\n\\maketitle\n\\tableofcontents\n\\newpage\n"
            + body
            + "\\end{document}\n"
        )

    def engine_available(self, engine: str) -> bool:
        import shutil

        return shutil.which(engine) is not None

    def pdf(
        self,
        source: str,
        out: str | os.PathLike[str],
        engine: str | None = None,
        overfull: list[str] | None = None,
        timeout: float = 120,
    ) -> Path:
        """Compile with a TeX engine into ``out``; raises ``RuntimeError`` with the log's
        first error, or ``FileNotFoundError`` if no engine is installed.  ``overfull``: a
        list that receives the log's "Overfull" warnings (a line past the margin)."""
        import shutil
        import subprocess
        import tempfile

        engine = engine or self.engines[0]
        exe = shutil.which(engine)
        if exe is None:
            raise FileNotFoundError(
                f"no TeX engine found ({engine}); install one, e.g. "
                f"'apt-get install texlive-latex-base texlive-latex-recommended', "
                f"or write the .tex with -o and compile it elsewhere"
            )
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "doc.tex"
            src.write_text(source)
            for _ in range(2):  # twice, for the table of contents
                r = subprocess.run(
                    [exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
                if r.returncode:
                    err = next(
                        (l for l in r.stdout.splitlines() if l.startswith("!")), "unknown error"
                    )
                    raise RuntimeError(f"{engine} failed: {err}")
            if overfull is not None:
                log = (Path(tmp) / "doc.log").read_text(errors="replace")
                overfull.extend(line for line in log.splitlines() if line.startswith("Overfull"))
            from ..atomic import write_output

            write_output(out, (Path(tmp) / "doc.pdf").read_bytes(), "PDF")
        return Path(out)


WRITER = LatexWriter
