"""``log``, ``tanh`` and ``erf`` for the generated kernels, in arithmetic that vectorises.

Numba calls libm's scalar functions for these (no SVML on this machine; llvmlite's code
generator scalarises the vectoriser's vector calls again; glibc's libmvec, tried, was not
used for the same reason),
and one opaque call in a loop body keeps the whole loop scalar: GELU's pass ran 8-13x slower
than PyTorch's.  These are plain arithmetic, selects (no data-dependent branch the loop
vectoriser cannot if-convert), bit casts, and :func:`exp` (below: the
same kind of function), so LLVM vectorises the loops that call them.

Each is a plain Python function (the kernels also run as Python, with Numba's JIT off, in the
fuzzer's source check); the generated module compiles them with
``numba.njit(inline="always")``, as it does ``exp``.  They compute in float64 whatever the
argument's type (a float32 kernel rounds the result once, when it stores it).  Measured
against libm (``math.*``) ulp by ulp in ``tests/test_define_vmath.py``, which states each
bound.  The phases that call them are compiled without fastmath's ``reassoc``
(:func:`derivgrad.notation.codegen._deco`): each splits a constant in two parts whose sum
reassociation could fold into one rounded constant.

The polynomial and rational coefficients of ``log`` and ``erf`` are those of Sun's fdlibm
(``e_log.c``, ``s_erf.c``; "Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
Developed at SunSoft, a Sun Microsystems, Inc. business. Permission to use, copy, modify, and
distribute this software is freely granted, provided that this notice is preserved."); the
branches of fdlibm became selects here, computed for every argument.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload


def f64_from_bits(bits: Any) -> float:
    """The double whose IEEE 754 bits are ``bits``: in Python through NumPy (the kernels run
    as Python in the fuzzer's source check), compiled as one bit cast (the overload below)."""
    return float(np.array(bits, dtype=np.int64).view(np.float64))


@intrinsic
def _bitcast_f64(typingctx: Any, bits: Any) -> Any:
    sig = types.float64(types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@overload(f64_from_bits, inline="always")
def _f64_from_bits_compiled(bits):  # unannotated: Numba compares its signature with the lambda
    return lambda bits: _bitcast_f64(bits)


def bits_of_f64(x: Any) -> int:
    """The IEEE 754 bits of the double ``x`` as an int64 (the inverse of
    :func:`f64_from_bits`): through NumPy in Python, one bit cast compiled."""
    return int(np.array(x, dtype=np.float64).view(np.int64))


@intrinsic
def _bitcast_i64(typingctx: Any, x: Any) -> Any:
    sig = types.int64(types.float64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@overload(bits_of_f64, inline="always")
def _bits_of_f64_compiled(x):  # unannotated, as above
    return lambda x: _bitcast_i64(float(x))


# -- exp -------------------------------------------------------------------------------------
# exp(x) = 2^k · e^r with k = round(x / ln 2), r = x - k ln 2 in two parts (Cody and Waite:
# k · _LN2_HI is exact for |k| < 2^21, so r carries no rounding of the product), e^r by its
# Taylor polynomial of degree 13 (remainder < 0.3466^14 / 14! = 4.4e-18 on |r| <= ln 2 / 2), and
# 2^k built as two powers of two from their exponent bits (each a normal number for every k
# that can occur, so results down to the subnormals are scaled in two exact steps).  Measured
# against libm on 3e6 points over [-746, 711]: at most 1 ulp (tests/test_define_exp.py holds it
# on 160,000).
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 to 32 bits: k · _LN2_HI is exact (also fdlibm's ln2_hi)
_LN2_LO = 1.9082149292705877e-10  # ln 2 - _LN2_HI


def _exp_finite(c: float) -> float:
    """``e ** c`` for a finite ``c`` in [-746, 710] (no branch: the callers clamp)."""
    k = math.floor(c * _LOG2E + 0.5)
    r = (c - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    ki = np.int64(k)
    k1 = ki >> 1
    return p * f64_from_bits((k1 + 1023) << 52) * f64_from_bits((ki - k1 + 1023) << 52)


# compiled inline wherever a compiled function calls it (Numba's inliner copies a callee with
# branches badly into a callee that is itself inlined: hence no branch in it)
@overload(_exp_finite, inline="always")
def _exp_finite_compiled(c: float) -> Any:  # annotated as _exp_finite: Numba compares the two
    return _exp_finite


def exp(x: Any) -> float:
    """``e ** x`` (see above): inf past the largest double's log, 0 below half the smallest
    subnormal's, nan for nan."""
    v = float(x)
    # clamped (NaN to 0): k stays a small integer; the ends are set below
    c = min(max(v, -746.0), 710.0) if v == v else 0.0
    y = _exp_finite(c)
    if v > 709.782712893384:  # past the largest double's log
        y = math.inf
    if v < -745.1332191019412:  # below half the smallest subnormal's log
        y = 0.0
    if v != v:
        y = v
    return y


# -- log -------------------------------------------------------------------------------------
# x = 2^k · m with m in [sqrt(2)/2, sqrt(2)) from the exponent bits (a subnormal scaled by 2^54
# first, exactly); log(m) = log(1 + f) = 2 artanh(s), s = f / (2 + f), by fdlibm's polynomial
# in s² (error below 2^-58.45 on this range), and k · ln 2 in two parts (k · _LN2_HI exact).
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_TINY = 2.2250738585072014e-308  # the smallest normal double
_TWO52 = 4503599627370496.0
_EXP_MAGIC = 0x4330000000000000  # the bits of 2^52: 2^52 + n for an n below 2^52 in its mantissa


def log(x: Any) -> float:
    """The natural logarithm: nan below 0, -inf at ±0, inf at inf."""
    v = float(x)
    sub = v < _TINY
    w = v * 18014398509481984.0 if sub else v  # 2^54
    b = bits_of_f64(w)
    # the biased exponent as a double without an int-to-float conversion (which AVX2 has not
    # for int64 lanes): 2^52 + e built from bits, less 2^52
    e = f64_from_bits(((b >> 52) & 0x7FF) | _EXP_MAGIC) - _TWO52
    m = f64_from_bits((b & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)  # in [1, 2)
    up = m > 1.4142135623730951
    m = 0.5 * m if up else m
    dk = e - 1023.0 + (1.0 if up else 0.0) - (54.0 if sub else 0.0)
    f = m - 1.0  # exact (Sterbenz)
    s = f / (2.0 + f)
    z = s * s
    w2 = z * z
    t1 = w2 * (_LG2 + w2 * (_LG4 + w2 * _LG6))
    t2 = z * (_LG1 + w2 * (_LG3 + w2 * (_LG5 + w2 * _LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    y = dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)
    if v == math.inf:
        y = v
    if v == 0.0:
        y = -math.inf
    if v < 0.0:
        y = math.nan
    if v != v:
        y = v
    return y


# -- tanh ------------------------------------------------------------------------------------
# |x| < 1: x + x³ · N(x²) / D(x²), Lambert's continued fraction of tanh cut after 19 (its
# [11/10] Padé approximant, integer coefficients, exact in doubles), written as x plus a
# correction below a fifth of x so that the rounding of the rational part barely shows (no
# cancellation near 0, where 1 - 2/(e^2x + 1) would lose every digit).  Truncation error below
# 6.5e-20 relative on |x| <= 1 (computed with mpmath at 40 digits).  |x| >= 1:
# 1 - 2 / (exp(2|x|) + 1), whose second term is below 0.24 (no cancellation to speak of),
# with the sign of x; exp's overflow to inf gives 1 exactly.
def tanh(x: Any) -> float:
    """The hyperbolic tangent."""
    v = float(x)
    a = abs(v)
    z = v * v
    n = 218243025.0 + z * (16081065.0 + z * (289575.0 + z * (1430.0 + z)))
    d = 654729075.0 + z * (310134825.0 + z * (18918900.0 + z * (315315.0 + z * (1485.0 + z))))
    small = v - v * z * (n / d)
    c = min(a, 40.0) if v == v else 0.0  # tanh(40) is 1 in doubles; nan is set below
    big = 1.0 - 2.0 / (_exp_finite(2.0 * c) + 1.0)
    big = big if v > 0.0 else -big
    y = small if a < 1.0 else big
    if v == 0.0:  # -0.0 - (-0.0 · …) would be +0.0
        y = v
    if v != v:
        y = v
    return y


# -- erf -------------------------------------------------------------------------------------
# fdlibm's four pieces on |x|: [0, 0.84375) x + x·P(x²)/Q(x²); [0.84375, 1.25) erx + P(s)/Q(s),
# s = |x| - 1; [1.25, 6) 1 - exp(-z² - 0.5625) · exp((z - |x|)(z + |x|) + R(1/x²)/S(1/x²)) / |x|,
# z = |x| with its low 32 bits cleared (z² exact), R/S one of two sets of coefficients
# ([1.25, 1/0.35) and [1/0.35, 6), chosen per element by selects); [6, inf] 1.  fdlibm's own
# error bounds for the rational parts are below 2^-57.
_ERX = 8.45062911510467529297e-01
_PP = (
    1.28379167095512558561e-01,
    -3.25042107247001499370e-01,
    -2.84817495755985104766e-02,
    -5.77027029648944159157e-03,
    -2.37630166566501626084e-05,
)
_QQ = (
    3.97917223959155352819e-01,
    6.50222499887672944485e-02,
    5.08130628187576562776e-03,
    1.32494738004321644526e-04,
    -3.96022827877536812320e-06,
)
_PA = (
    -2.36211856075265944077e-03,
    4.14856118683748331666e-01,
    -3.72207876035701323847e-01,
    3.18346619901161753674e-01,
    -1.10894694282396677476e-01,
    3.54783043256182359371e-02,
    -2.16637559486879084300e-03,
)
_QA = (
    1.06420880400844228286e-01,
    5.40397917702171048937e-01,
    7.18286544141962662868e-02,
    1.26171219808761642112e-01,
    1.36370839120290507362e-02,
    1.19844998467991074170e-02,
)
_RA = (
    -9.86494403484714822705e-03,
    -6.93858572707181764372e-01,
    -1.05586262253232909814e01,
    -6.23753324503260060396e01,
    -1.62396669462573470355e02,
    -1.84605092906711035994e02,
    -8.12874355063065934246e01,
    -9.81432934416914548592e00,
)
_SA = (
    1.96512716674392571292e01,
    1.37657754143519042600e02,
    4.34565877475229228821e02,
    6.45387271733267880336e02,
    4.29008140027567833386e02,
    1.08635005541779435134e02,
    6.57024977031928170135e00,
    -6.04244152148580987438e-02,
)
# the second set has one coefficient fewer in each: a 0 on top leaves the Horner sums as they are
_RB = (
    -9.86494292470009928597e-03,
    -7.99283237680523006574e-01,
    -1.77579549177547519889e01,
    -1.60636384855821916062e02,
    -6.37566443368389627722e02,
    -1.02509513161107724954e03,
    -4.83519191608651397019e02,
    0.0,
)
_SB = (
    3.03380607434824582924e01,
    3.25792512996573918826e02,
    1.53672958608443695994e03,
    3.19985821950859553908e03,
    2.55305040643316442583e03,
    4.74528541206955367215e02,
    -2.24409524465858183362e01,
    0.0,
)
_HIGH32 = -4294967296  # 0xFFFFFFFF00000000 as an int64: keeps a double's upper 32 bits


def erf(x: Any) -> float:
    """The error function."""
    v = float(x)
    a = abs(v)
    z = v * v
    p0 = _PP[0] + z * (_PP[1] + z * (_PP[2] + z * (_PP[3] + z * _PP[4])))
    q0 = 1.0 + z * (_QQ[0] + z * (_QQ[1] + z * (_QQ[2] + z * (_QQ[3] + z * _QQ[4]))))
    s = a - 1.0
    p1 = _PA[0] + s * (
        _PA[1] + s * (_PA[2] + s * (_PA[3] + s * (_PA[4] + s * (_PA[5] + s * _PA[6]))))
    )
    q1 = 1.0 + s * (_QA[0] + s * (_QA[1] + s * (_QA[2] + s * (_QA[3] + s * (_QA[4] + s * _QA[5])))))
    # one division for the two pieces that need one ratio each (divisions are the slow part)
    inner = a < 0.84375
    pq = (p0 if inner else p1) / (q0 if inner else q1)
    y0 = v + v * pq
    y1 = _ERX + pq
    # this piece's range (nan to 1.25): no overflow or nan from the other pieces' arguments
    c = min(max(a, 1.25), 6.0) if v == v else 1.25
    u = 1.0 / (c * c)
    near = c < 2.857142857142857  # 1/0.35
    r = _RA[7] if near else _RB[7]
    r = (_RA[6] if near else _RB[6]) + u * r
    r = (_RA[5] if near else _RB[5]) + u * r
    r = (_RA[4] if near else _RB[4]) + u * r
    r = (_RA[3] if near else _RB[3]) + u * r
    r = (_RA[2] if near else _RB[2]) + u * r
    r = (_RA[1] if near else _RB[1]) + u * r
    r = (_RA[0] if near else _RB[0]) + u * r
    t = _SA[7] if near else _SB[7]
    t = (_SA[6] if near else _SB[6]) + u * t
    t = (_SA[5] if near else _SB[5]) + u * t
    t = (_SA[4] if near else _SB[4]) + u * t
    t = (_SA[3] if near else _SB[3]) + u * t
    t = (_SA[2] if near else _SB[2]) + u * t
    t = (_SA[1] if near else _SB[1]) + u * t
    t = (_SA[0] if near else _SB[0]) + u * t
    t = 1.0 + u * t
    h = f64_from_bits(bits_of_f64(c) & _HIGH32)
    # fdlibm's two exponentials as one: the sum of their arguments rounds by at most an ulp
    # of 36.6, a relative error of 4e-15 in erfc (below 0.077 here), well under an ulp of erf;
    # 1/c as c · (1/c²)
    y2 = 1.0 - _exp_finite((-h * h - 0.5625) + ((h - c) * (h + c) + r / t)) * (c * u)
    m = y1 if a < 1.25 else (y2 if a < 6.0 else 1.0)
    m = m if v > 0.0 else -m
    y = y0 if inner else m
    if v != v:
        y = v
    return y
