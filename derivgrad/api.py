"""The symbolic face's entry point: :func:`derive`."""

from __future__ import annotations

from typing import Any

from . import render as _render  # noqa: F401  (registers the document face: d.latex())
from .symbolic.derivation import Derivation


def derive(op: str, **params: Any) -> Derivation:
    """Derive the gradient of ``op`` (a name from :data:`derivgrad.OPS`) on a small instance.

    Parameters use the command line's names (``input``, ``kernel``, ``stride``, ``padding``,
    ``dilation``, ``channels``, ``filters``, ``batch``, ``classes``, ``features``, ...).
    Returns a :class:`~derivgrad.symbolic.derivation.Derivation`; raises
    :class:`~derivgrad.errors.ParamError` (a ``ValueError``) for parameters that describe
    no valid op.
    """
    from .ops.base import check_size
    from .registry import get

    the_op = get(op)
    check_size(the_op, params)  # the one size guard: refuse in well under a second
    return the_op.build(**params)
