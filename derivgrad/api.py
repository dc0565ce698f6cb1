"""The symbolic face's entry point: :func:`derive`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .documents import render as _render  # noqa: F401  (registers the document face: d.latex())
from .symbolic.derivation import Derivation


def derive(op: str, values: Mapping[str, Any] | None = None, **params: Any) -> Derivation:
    """Derive the gradient of ``op`` (a name from :data:`derivgrad.OPS`) on a small instance.

    Parameters use the command line's names (``input``, ``kernel``, ``stride``, ``padding``,
    ``dilation``, ``channels``, ``filters``, ``batch``, ``classes``, ``features``, ...).
    Returns a :class:`~derivgrad.symbolic.derivation.Derivation`; raises
    :class:`~derivgrad.errors.ParamError` (a ``ValueError``) for parameters that describe
    no valid op.

    ``values``: numbers for a numeric instance, ``{name: array}`` with the names of
    ``d.inputs`` plus ``"upstream"`` for δ (a name left out stays symbolic); integers and
    fractions stay exact, and the worked solution carries them through every step.
    """
    from .ops.base import check_size
    from .registry import get

    the_op = get(op)
    check_size(the_op, params)  # the one size guard: refuse in well under a second
    d = the_op.build(**params)
    if values is not None:
        from .documents.instance import attach

        d = attach(d, values)
    return d
