"""Output formats: one public module per format, named after it (``latex.py`` is ``--format
latex``), each exporting ``WRITER``: a :class:`Writer` subclass that writes the
format-agnostic document model (:class:`derivgrad.documents.document.Doc`) block by block, one
method per block kind (``visit_h``, ``visit_p``, ``visit_eq``), as SymPy's printers dispatch on
``_print_<Kind>``.  Helpers shared by writers are private modules (``_mathml.py``).

This module is the one list of formats: the renderer, the worked-problems collection and the
command line (``--format`` choices, the format a ``-o`` file's suffix names, ``--engine``)
all read it.  Adding a format is adding a module here.  The names come from the package's
files, without importing them: the command line lists them without loading SymPy.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import UsageError


class Writer:
    """One format.  Subclasses set the class attributes and the ``visit_<kind>`` methods; a
    standalone document wraps the blocks with :meth:`standalone` (a preamble, a page)."""

    name: ClassVar[str] = ""
    #: the file suffix ``-o`` infers this format from, first the one it writes by default
    extensions: ClassVar[tuple[str, ...]] = ()
    #: PDF engines that compile this format's standalone documents, preferred first
    engines: ClassVar[tuple[str, ...]] = ()
    #: a collection of documents (worked problems) can be written in this format
    collects: ClassVar[bool] = True
    #: what joins the blocks of one document
    joiner: ClassVar[str] = "\n\n"

    def blocks(self, doc: Any) -> list[str]:
        out = []
        for kind, x in doc.blocks:
            visit = getattr(self, f"visit_{kind}", None)
            if visit is None:
                raise NotImplementedError(f"the {self.name} writer has no visit_{kind}")
            out.append(visit(x))
        return out

    def body(self, doc: Any) -> str:
        return self.joiner.join(self.blocks(doc))

    def document(self, doc: Any, standalone: bool = True) -> str:
        """One document: standalone (a file of its own) or a fragment to paste."""
        body = self.body(doc)
        return self.standalone(body) if standalone else body + "\n"

    def standalone(self, body: str) -> str:
        return body + "\n"

    def derivation(self, d: Any, build: Any, standalone: bool = True) -> str:
        """The derivation ``d``: its document, ``build(d)`` (the renderer's), written."""
        return self.document(build(d), standalone)

    def collection(self, docs: Sequence[Any], title: str) -> str:
        """Several documents (the worked problems) as one, under ``title``."""
        return "\n\n".join(self.document(doc) for doc in docs)

    def engine_available(self, engine: str) -> bool:
        return False

    def pdf(
        self,
        source: str,
        out: str | os.PathLike[str],
        engine: str | None = None,
        overfull: list[str] | None = None,
        timeout: float = 120,
    ) -> Path:
        """Compile a standalone document (``source``) into the PDF file ``out``."""
        raise UsageError(f"--format {self.name} does not compile to PDF")


def names() -> tuple[str, ...]:
    """Every format's name (its module's), without importing the modules."""
    return tuple(
        sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    )


def get(name: str) -> Writer:
    """A fresh writer for format ``name``; a clear error for a name that is none."""
    if name not in names():
        raise UsageError(f"unknown format {name!r}; choose {', '.join(names())}")
    writer = importlib.import_module(f"{__name__}.{name}").WRITER
    return writer()


def from_path(path: str | os.PathLike[str]) -> str | None:
    """The format a file's suffix names (``.tex`` → latex), or ``None``."""
    suffix = Path(path).suffix.lower()
    for name in names():
        if suffix and suffix in get(name).extensions:
            return name
    return None


def engines() -> dict[str, str]:
    """PDF engine → the format it compiles, in the order an engine is chosen when none is
    named (LaTeX's first: the documents were typeset for it)."""
    order = sorted(names(), key=lambda n: n != "latex")
    return {e: n for n in order for e in get(n).engines}


def pdf_engine(requested: str | None, fmt: str | None) -> tuple[str, str]:
    """``(engine, format)`` for ``--pdf``: the engine named, else the first installed one
    that compiles ``fmt`` (any format when none was asked for)."""
    table = engines()
    if requested is not None:
        if requested not in table:
            raise UsageError(f"unknown PDF engine {requested!r}; choose {', '.join(table)}")
        if fmt is not None and table[requested] != fmt:
            raise UsageError(
                f"--engine {requested} compiles --format {table[requested]}, not {fmt}"
            )
        return requested, table[requested]
    candidates = [(e, n) for e, n in table.items() if fmt is None or n == fmt]
    if not candidates:
        raise UsageError(f"--pdf compiles {', '.join(sorted(set(table.values())))}, not {fmt}")
    for e, n in candidates:
        if get(n).engine_available(e):
            return e, n
    return candidates[0]  # not installed: its writer's error says how to get it
