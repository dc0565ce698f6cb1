r"""Markdown with ``$...$`` and ``$$`` math (GitHub, Jupyter, Pandoc): the formulas are the
document model's LaTeX strings inside ``aligned``."""

from __future__ import annotations

import re

from ..documents.document import plain_text, split_prose
from . import Writer
from .latex import align_rows


def prose(t: str) -> str:
    # LaTeX text commands outside math mean nothing on GitHub: code spans and plain text;
    # what a Markdown viewer would read as markup (HTML, links, emphasis) stays text
    parts = split_prose(t)
    for i in range(0, len(parts), 2):
        pieces = re.split(r"\\texttt\{(.*?)\}", parts[i])
        parts[i] = "".join(
            "`" + p.replace("\\_", "_") + "`"
            if k % 2
            else re.sub(r"([\\`*_\[\]<>$&])", r"\\\1", plain_text(p))
            for k, p in enumerate(pieces)
        )
    return "$".join(parts)


class MarkdownWriter(Writer):
    name = "markdown"
    extensions = (".md", ".markdown")

    def visit_h(self, x: tuple[int, str]) -> str:
        return "#" * x[0] + " " + prose(x[1])

    def visit_p(self, x: str) -> str:
        return prose(x)

    def visit_eq(self, x: list[tuple[str, list[str]]]) -> str:
        return "$$\n\\begin{aligned}\n" + align_rows(x) + "\n\\end{aligned}\n$$"


WRITER = MarkdownWriter
