r"""Markdown with ``$...$`` and ``$$`` math (GitHub, Jupyter, Pandoc): the formulas are the
document model's LaTeX strings inside ``aligned``."""

from __future__ import annotations

import re

from . import Writer
from .latex import align_rows


def prose(t: str) -> str:
    # LaTeX text commands outside math mean nothing on GitHub: code spans and plain text
    t = re.sub(r"\\texttt\{(.*?)\}", lambda m: "`" + m.group(1).replace("\\_", "_") + "`", t)
    parts = t.split("$")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("\\_", "_")
    return "$".join(parts)


class MarkdownWriter(Writer):
    name = "markdown"
    extensions = (".md", ".markdown")

    def visit_h(self, x: tuple[int, str]) -> str:
        return "#" * x[0] + " " + x[1]

    def visit_p(self, x: str) -> str:
        return prose(x)

    def visit_eq(self, x: list[tuple[str, list[str]]]) -> str:
        return "$$\n\\begin{aligned}\n" + align_rows(x) + "\n\\end{aligned}\n$$"


WRITER = MarkdownWriter
