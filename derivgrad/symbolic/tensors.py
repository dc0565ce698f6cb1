"""Symbol tensors and the array operations the derivations are written in.

Tensors are NumPy object arrays of SymPy expressions while a derivation is built (so that
padding, flipping, dilation and slicing read like NumPy), and become ``sympy.Array`` at the
end.  Display names are 1-based, as in the course notes: ``x[0, 1]`` is the symbol
``x_{1,2}``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy as sp

ZERO = sp.Integer(0)


def symbols(
    name: str, shape: tuple[int, ...], latex: str | None = None, **assumptions
) -> np.ndarray:
    """An object array of symbols ``name_{i,j,...}`` (1-based indices) of ``shape``.

    ``latex`` is the base used in LaTeX (``\\delta`` for ``d``), default ``name``.
    """
    base = latex or name
    out = np.empty(shape, dtype=object)
    for idx in itertools.product(*(range(n) for n in shape)):
        sub = ",".join(str(i + 1) for i in idx)
        out[idx] = sp.Symbol(f"{base}_{{{sub}}}" if idx else base, **assumptions)
    return out


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(ZERO)
    return out


def pad(a: np.ndarray, widths: Sequence[tuple[int, int]]) -> np.ndarray:
    """Zero-pad the last ``len(widths)`` axes; ``widths`` is a list of ``(before, after)``."""
    full = [(0, 0)] * (a.ndim - len(widths)) + list(widths)
    out = zeros(tuple(n + b + e for n, (b, e) in zip(a.shape, full)))
    out[tuple(slice(b, b + n) for n, (b, _) in zip(a.shape, full))] = a
    return out


def dilate(a: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Insert ``f - 1`` zeros between neighbours along each of the last axes."""
    lead = a.ndim - len(factors)
    shape = a.shape[:lead] + tuple(f * (n - 1) + 1 for n, f in zip(a.shape[lead:], factors))
    out = zeros(shape)
    out[(slice(None),) * lead + tuple(slice(None, None, f) for f in factors)] = a
    return out


def flip(a: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Reverse the given axes (``rot180`` of a 2-D filter is ``flip(w, (-2, -1))``)."""
    return a[
        tuple(
            slice(None, None, -1) if (i in axes or i - a.ndim in axes) else slice(None)
            for i in range(a.ndim)
        )
    ]


def correlate(
    x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int]
) -> np.ndarray:
    r"""Multi-channel cross-correlation of one image, no padding (pad beforehand).

    ``x (C, *spatial)`` and ``w (O, C, *kernel)`` give ``y (O, *out)`` with
    ``y[o, i] = Σ_{c, k} w[o, c, k] · x[c, i·stride + k·dilation]`` (per spatial axis), and
    ``out = floor((n - dilation (k - 1) - 1) / stride) + 1``.  Zero terms are skipped so that
    the expressions stay as sparse as the arithmetic.
    """
    from derivgrad.kernels import output_size

    O, C = w.shape[:2]
    ks = w.shape[2:]
    outs = tuple(
        output_size(n, k, s, 0, d) for n, k, s, d in zip(x.shape[1:], ks, stride, dilation)
    )
    y = np.empty((O,) + outs, dtype=object)
    for o in range(O):
        for i in itertools.product(*(range(n) for n in outs)):
            terms = []
            for c in range(C):
                for k in itertools.product(*(range(n) for n in ks)):
                    wv = w[(o, c) + k]
                    xv = x[
                        (c,)
                        + tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, stride, dilation))
                    ]
                    if wv != 0 and xv != 0:
                        terms.append(wv * xv)
            y[(o,) + i] = sp.Add(*terms)
    return y


def to_array(a: Any) -> sp.Array:
    """Object array → ``sympy.ImmutableDenseNDimArray`` (a 0-d array becomes shape ``()``)."""
    a = np.asarray(a, dtype=object)
    if a.ndim == 0:
        return sp.Array(a.item())
    return sp.ImmutableDenseNDimArray(list(a.reshape(-1)), a.shape)
