r"""A worked solution as one standalone HTML page: the mathematics as MathML (rendered by the
browser itself: Chromium 109+, Firefox, Safari), no script, no network, no external font.

The page holds the same sections, sentences and block matrices as the LaTeX, converted from
the same LaTeX strings (:mod:`.mathml`).  On a phone-width screen the text wraps and a wide
equation scrolls inside its own box.  Several documents (the worked problems) get a table of
contents.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from ..documents.document import Doc, plain_text, split_prose
from . import Writer
from ._mathml import aligned, mathml

STYLE = """
:root { color-scheme: light; }
body { margin: 0; font: 17px/1.55 Georgia, "DejaVu Serif", serif; color: #1b1b1b;
       background: #fff; }
main { max-width: 52rem; margin: 0 auto; padding: 1rem 1.1rem 3rem; }
h1 { font-size: 1.55rem; line-height: 1.25; margin: 2rem 0 0.8rem; }
h2 { font-size: 1.2rem; margin: 1.6rem 0 0.5rem; }
p { margin: 0.6rem 0; overflow-wrap: break-word; }
math { font-size: 1.05em; }
.eq { overflow-x: auto; overflow-y: hidden; margin: 0.7rem 0; padding: 0.3rem 0.2rem;
      border-left: 3px solid #e3e6ea; max-width: 100%; }
/* left-aligned like align* (block math is centred), fractions full size as in display */
.eq math { display: inline math; margin: 0; }
.eq mtable, .eq mtd { math-style: normal; }
/* MathML Core has no columnalign: the align* columns are set by CSS */
.eq > math > mtable > mtr > mtd:first-child { text-align: right; padding-right: 0.2em; }
.eq > math > mtable > mtr > mtd:last-child { text-align: left; }
nav.toc { border: 1px solid #e3e6ea; border-radius: 6px; padding: 0.6rem 1rem; }
nav.toc ol { margin: 0.3rem 0; padding-left: 1.4rem; }
code { font-size: 0.9em; }
span.m { display: inline-block; max-width: 100%; overflow-x: auto; overflow-y: hidden;
         vertical-align: middle; }
"""


def _prose(text: str) -> str:
    """A paragraph: inline ``$...$`` as MathML, the rest escaped (``\\texttt`` as code)."""
    parts = split_prose(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            # inline math does not break across lines: a long formula scrolls in its span
            out.append(f'<span class="m">{mathml(part)}</span>')
            continue
        code = []

        def keep(m: re.Match) -> str:
            code.append(m.group(1).replace("\\_", "_"))
            return f"\x00{len(code) - 1}\x00"

        t = plain_text(re.sub(r"\\texttt\{(.*?)\}", keep, part))
        t = html.escape(t, quote=False)
        t = re.sub(r"\x00(\d+)\x00", lambda m: f"<code>{html.escape(code[int(m[1])])}</code>", t)
        out.append(t)
    return "".join(out)


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "section"
    slug, k = base, 2
    while slug in used:
        slug, k = f"{base}-{k}", k + 1
    used.add(slug)
    return slug


class HtmlWriter(Writer):
    name = "html"
    extensions = (".html", ".htm")
    joiner = "\n"

    def __init__(self, used: set[str] | None = None) -> None:
        self.used = set() if used is None else used  # ids taken on the page
        self.heads: list[tuple[str, str]] = []  # top-level headings, for the contents

    def visit_h(self, x: tuple[int, str]) -> str:
        level, text = x
        slug = _slug(plain_text(text), self.used)
        if level == 1:
            self.heads.append((slug, text))
        return f'<h{level} id="{slug}">{_prose(text)}</h{level}>'

    def visit_p(self, x: str) -> str:
        return f"<p>{_prose(x)}</p>"

    def visit_eq(self, x: list[tuple[str, list[str]]]) -> str:
        return f'<div class="eq">{aligned(x)}</div>'

    def document(self, doc: Doc, standalone: bool = True) -> str:
        return to_html(doc) if standalone else fragment(doc)

    def collection(self, docs: Sequence[Doc], title: str) -> str:
        return to_html(docs, title=title, toc=True)


def body(doc: Doc, used: set[str] | None = None) -> tuple[str, list[tuple[str, str]]]:
    """The HTML of one document's blocks, and its top-level headings as ``(id, text)``."""
    w = HtmlWriter(used)
    return w.body(doc), w.heads


def to_html(docs: Doc | Sequence[Doc], title: str | None = None, toc: bool = False) -> str:
    """One standalone page (``<!DOCTYPE html>`` … ``</html>``) of one or more documents."""
    docs = [docs] if isinstance(docs, Doc) else list(docs)
    used: set[str] = set()
    parts, heads = [], []
    for doc in docs:
        b, h = body(doc, used)
        parts.append(f"<section>\n{b}\n</section>")
        heads.extend(h)
    if title is None:
        title = plain_text(heads[0][1]) if heads else "derivgrad"
    nav = ""
    if toc:
        items = "".join(f'<li><a href="#{s}">{_prose(t)}</a></li>' for s, t in heads)
        nav = f'<nav class="toc"><strong>Contents</strong><ol>{items}</ol></nav>'
        parts.insert(0, f"<h1>{html.escape(title)}</h1>\n{nav}")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(parts) + "\n</main>\n</body>\n</html>\n"
    )


def fragment(doc: Doc) -> str:
    """The document's blocks without the page around them (a notebook cell's ``text/html``)."""
    return f'<div class="derivgrad">{body(doc)[0]}</div>'


WRITER = HtmlWriter
