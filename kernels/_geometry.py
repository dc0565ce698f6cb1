"""Window geometry: the one place that knows how big a sliding-window output is.

Convolution, pooling, im2col and the symbolic face all call :func:`output_size`; the 2-D
kernels take a window and its output as one :class:`Geometry`, built by :func:`geometry2d`.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple


def output_size(n: Any, k: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Any:
    r"""Number of window positions along one axis (ints, or SymPy integers: hence ``Any``).

    .. math:: n_{out} = \left\lfloor \frac{n + 2p - d(k-1) - 1}{s} \right\rfloor + 1

    ``n`` input length, ``k`` window length, ``stride`` s, ``padding`` p (each side),
    ``dilation`` d.  Works on ints and on SymPy integers alike; a result below 1 means the
    window does not fit (callers validate).
    """
    for name, v, lo in (
        ("n", n, 0),
        ("k", k, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
    ):
        if isinstance(v, (bool, float, complex)):
            raise TypeError(f"output_size: {name} must be an integer, got {v!r}")
        if isinstance(v, numbers.Integral) and v < lo:
            raise ValueError(f"output_size: {name} must be >= {lo}, got {v}")
    return (n + 2 * padding - window_span(k, dilation)) // stride + 1


def window_span(k: Any, dilation: Any = 1) -> Any:
    """Input positions a (dilated) window covers: ``d(k - 1) + 1``."""
    return dilation * (k - 1) + 1


def output_shape2d(hw, kernel, stride, padding, dilation):
    """``(HO, WO)`` for an ``(H, W)`` input and ``(kh, kw)``-style pairs."""
    return tuple(
        output_size(hw[i], kernel[i], stride[i], padding[i], dilation[i]) for i in range(2)
    )


class Geometry(NamedTuple):
    """A 2-D sliding window and the output it gives: kernel ``(kh, kw)``, stride
    ``(sh, sw)``, padding ``(ph, pw)``, dilation ``(dh, dw)``, output ``(ho, wo)``.

    Numba compiles a named tuple as a tuple whose fields it reads by name (a constant index:
    no cost over a plain tuple), so kernels say ``geo.wo``, never ``geo[9]``."""

    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    ho: int
    wo: int

    @property
    def kernel(self) -> tuple[int, int]:
        return self.kh, self.kw

    @property
    def stride(self) -> tuple[int, int]:
        return self.sh, self.sw

    @property
    def padding(self) -> tuple[int, int]:
        return self.ph, self.pw

    @property
    def dilation(self) -> tuple[int, int]:
        return self.dh, self.dw


def geometry2d(hw, kernel, stride, padding, dilation) -> Geometry:
    """The :class:`Geometry` of ``(kh, kw)``-style pairs on an ``(H, W)`` input (validated
    by the caller); plain ints, so one compiled specialisation serves every call."""
    ho, wo = output_shape2d(hw, kernel, stride, padding, dilation)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    return Geometry(*map(int, (kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)))
