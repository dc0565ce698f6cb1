"""User-defined ops in index notation: :func:`define` (see :mod:`derivgrad.notation.op`)."""

from __future__ import annotations

from typing import Any

from .op import DefinedOp, cache_dir
from .parse import DefineError


def define(
    spec: str,
    name: str | None = None,
    title: str | None = None,
    ranges: dict[str, Any] | None = None,
    **shapes: Any,
) -> DefinedOp:
    r"""A new op from a definition in index notation, on example shapes.

    ``spec``: one statement a line, ``T[i, ...] = expr`` (elementwise) or ``T[i, ...] += expr``
    (summed over the indices on the right only); the last statement's tensor is the output.
    ``shapes``: an example shape per input tensor (``x=(2, 3, 7, 7)``), from which the index
    ranges are inferred; the kernels run on any sizes that fit.  The op is registered under
    ``name`` (default ``defined_<hash>``), so ``derivgrad.derive(name)``, the renderer and
    ``derivgrad check`` know it.  ``ranges={"u": 2}`` (or ``(lo, hi)``) fixes an index's
    range where no read determines it (a pooling window's offsets).  A malformed definition
    raises a one-line :class:`DefineError` (a ``ValueError``) naming the statement and the
    column.
    """
    from ..registry import register

    return register(DefinedOp(spec, shapes, name=name, title=title, ranges=ranges))  # type: ignore[return-value]


__all__ = ["define", "DefinedOp", "DefineError", "cache_dir"]
