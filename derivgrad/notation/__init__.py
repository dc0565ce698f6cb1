"""User-defined ops in index notation: :func:`define` (see :mod:`derivgrad.notation.op`)."""

from __future__ import annotations

import sys
from typing import Any

from .op import DefinedOp, cache_dir
from .parse import DefineError

# ops defined before the registry was first imported; it registers them when it is imported.
# Importing it loads every built-in op with its kernels and hypothesis: 0.3-0.5 s that a
# script running only its own layer (and the warm start from the disk cache) need not pay.
PENDING: list[DefinedOp] = []


# define()'s own keyword arguments: an input tensor of one of these names could not be given
# its shape as ``name=(3,)``
RESERVED = ("name", "title", "ranges")


def define(
    spec: str,
    /,
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
    range where no read determines it (a pooling window's offsets, an index held only by a
    remainder ``i % 2``, a transposed convolution's output ``(x[(i - u) / 2] ?? 0)``).
    Subscripts are affine in the indices and in their ``// k`` and ``% k`` (``k`` a positive
    integer: upsampling ``x[i // 2]``, pixel shuffle); README's notation section has the
    whole grammar, :mod:`derivgrad.notation.parse` too.  A malformed definition
    raises a one-line :class:`DefineError` (a ``ValueError``) naming the statement and the
    column.  An input tensor may have any identifier as its name but ``name``, ``title`` and
    ``ranges``, define()'s own arguments.
    """
    from .parse import parse

    defined = set()
    for st in parse(spec):
        for read, _, col in st.refs:
            if read in RESERVED and read not in defined:
                raise st.error(
                    col,
                    f"input tensor {read!r} has the name of define()'s argument {read}=: "
                    f"rename the tensor (for example to {read}_)",
                )
        defined.add(st.target)
    op = DefinedOp(spec, shapes, name=name, title=title, ranges=ranges)
    if name is None and "derivgrad.registry" not in sys.modules:
        # a ``defined_<hash>`` name cannot be a built-in's: registered with the built-ins
        PENDING.append(op)
        return op
    from ..registry import register  # a chosen name is checked against the built-ins now

    return register(op)  # type: ignore[return-value]


__all__ = ["define", "DefinedOp", "DefineError", "cache_dir"]
