"""Where a numeric instance leaves the real numbers: the first statement and entry.

A definition is valid for every input, but its values need not be: ``1 / x[i]`` at ``x = 0``,
``log`` or ``sqrt`` of a negative number, ``exp`` past float64's range.  The kernels compute
those as NumPy does (``inf``, ``nan``); a numeric instance (``derive(..., values=)``, the
command line's ``--value``) is a question about particular numbers, so it ends instead in one
line naming the statement and the entry where the first non-finite value appears.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import ParamError
from .program import Program

WHY = (
    "a division by zero, a logarithm or square root outside its domain, or a number past "
    "float64's range"
)


def _first(a: np.ndarray) -> tuple[tuple[int, ...], float] | None:
    bad = np.argwhere(~np.isfinite(a))
    if not len(bad):
        return None
    i = tuple(int(n) for n in bad[0])
    return i, float(a[i])


def _entry(name: str, i: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(str(n + 1) for n in i)}] (1-based)"


def check_forward(prog: Program, tensors: Mapping[str, np.ndarray]) -> None:
    """Raise on the first non-finite entry of the defined tensors, in statement order (so
    the statement named is the one where it starts, not one that reads it)."""
    for st in prog.statements:
        found = _first(tensors[st.target])
        if found is not None:
            i, v = found
            raise ParamError(
                f"statement {st.number} ({st.text!r}) gives {_entry(st.target, i)} = {v} at "
                f"these values: {WHY}"
            )


def check_backward(prog: Program, adjoints: Mapping[str, np.ndarray]) -> None:
    """Raise on the first non-finite entry of the adjoints, in the order the backward
    computes them, naming the statements that read that tensor."""
    for name in list(reversed(prog.defined[:-1])) + list(prog.inputs):
        found = _first(adjoints[name])
        if found is not None:
            i, v = found
            readers = [
                f"statement {st.number} ({st.text!r})"
                for st in prog.statements
                if any(r == name for r, _, _ in st.refs)
            ]
            raise ParamError(
                f"the gradient dL/d{_entry(name, i)} = {v} at these values, through "
                f"{' and '.join(readers)}: {WHY}"
            )
