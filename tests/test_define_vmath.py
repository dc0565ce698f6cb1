"""The generated kernels' ``log``, ``tanh`` and ``erf`` (:mod:`derivgrad.notation.vmath`:
arithmetic that vectorises) against libm's (``math.*``) and against the true values (mpmath at
120 bits), ulp by ulp: dense sweeps at the hard places (0, the subnormals, the approximation
breakpoints, the ends), random points over the whole range, and hypothesis-drawn doubles.

Bounds held here (measured first on 3e5 points each):
- ``log``, ``erf``: within 1 ulp of libm; ``tanh``: within 2 ulp of libm, whose own tanh is up
  to 2 ulp from the truth (1.96 measured);
- all three below 1 ulp from the true value;
- a subnormal result within one subnormal step of libm's; inf, -inf, ±1, 0 and nan where
  libm's are.
"""

from __future__ import annotations

import math

import mpmath
import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import derivgrad
from derivgrad.notation import vmath

TINY = 2.2250738585072014e-308  # the smallest normal double
MAX = 1.7976931348623157e308
FLAGS = {"nsz", "contract", "arcp"}  # the kernels' fastmath flags where these are called


def _compiled(fn):
    inner = numba.njit(inline="always")(fn)  # as the generated modules compile it

    @numba.njit(fastmath=FLAGS)
    def run(x, y):
        for i in range(x.size):
            y[i] = inner(x[i])

    return run


OURS = {name: _compiled(getattr(vmath, name)) for name in ("log", "tanh", "erf")}
ULP_VS_LIBM = {"log": 1.0, "tanh": 2.0, "erf": 1.0}
MPMATH = {"log": mpmath.log, "tanh": mpmath.tanh, "erf": mpmath.erf}


def _libm1(name: str, v: float) -> float:
    try:
        return getattr(math, name)(v)
    except ValueError:  # log of 0 or of a negative number
        return -math.inf if v == 0 else math.nan


def _libm(name: str, x: np.ndarray) -> np.ndarray:
    return np.array([_libm1(name, float(v)) for v in x])


def _ours(name: str, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.empty_like(x)
    OURS[name](x, y)
    return y


def _around(points, ulps: int = 40, spread: float = 1e-6, n: int = 2001) -> np.ndarray:
    """Each point, its neighbours ulp by ulp, and a dense sweep of relative width ``spread``."""
    out = []
    for p in points:
        out.append(p + np.spacing(p) * np.arange(-ulps, ulps + 1))
        out.append(np.linspace(p * (1 - spread), p * (1 + spread), n))
    return np.concatenate(out)


def _specials() -> np.ndarray:
    return np.array(
        [0.0, -0.0, 5e-324, -5e-324, 1e-310, -1e-310, TINY, -TINY, 1e-300, -1e-300]
        + [MAX, -MAX, math.inf, -math.inf, math.nan]
    )


def _hard(name: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    common = [_specials(), rng.uniform(-1e-8, 1e-8, 2000)]
    if name == "log":
        bits = rng.integers(1, 0x7FF0000000000000, 100_000, dtype=np.int64)
        return np.concatenate(
            common
            + [
                bits.view(np.float64),  # uniform over the bit patterns: every exponent
                np.exp(rng.uniform(-745.0, 709.7, 50_000)),
                1.0 + rng.uniform(-1e-4, 1e-4, 20_000),  # log near 0: no cancellation
                _around([1.0, math.sqrt(2.0), math.sqrt(0.5), 2.0, 0.5, 1e-310, 4e-320, TINY]),
                rng.uniform(0.0, TINY, 5000),  # the subnormals
                -np.abs(rng.standard_normal(100)),
            ]
        )
    if name == "tanh":
        return np.concatenate(
            common
            + [
                rng.uniform(-25.0, 25.0, 60_000),
                rng.uniform(-1.5, 1.5, 60_000),
                np.linspace(-1e-3, 1e-3, 20_001),
                _around([1.0, -1.0, 0.5, 19.06, 20.0, 40.0, -40.0], spread=1e-3),
                [1e3, -1e3, 1e300, -1e300],
            ]
        )
    return np.concatenate(
        common
        + [
            rng.uniform(-7.0, 7.0, 60_000),
            np.linspace(-6.5, 6.5, 50_001),
            rng.uniform(-1e-3, 1e-3, 10_000),
            # fdlibm's pieces meet at 0.84375, 1.25, 1/0.35, 6
            _around([0.84375, -0.84375, 1.25, -1.25, 2.857142857142857, 1 / 0.35, 6.0, -6.0]),
            [27.0, 28.0, 1e10, -1e10],
        ]
    )


def _check_against_libm(name: str, x: np.ndarray) -> None:
    got, want = _ours(name, x), _libm(name, x)
    normal = np.isfinite(want) & (np.abs(want) >= TINY)
    ulp = np.abs(got[normal] - want[normal]) / np.spacing(np.abs(want[normal]))
    if ulp.size:
        i = int(np.argmax(ulp))
        bound = ULP_VS_LIBM[name]
        assert ulp[i] <= bound, f"{name}: {ulp[i]} ulp at x = {x[normal][i]!r}"
    sub = np.isfinite(want) & (np.abs(want) < TINY) & (want != 0)
    assert np.all(np.abs(got[sub] - want[sub]) <= 5e-324), name  # one step of the subnormals
    rest = ~normal & ~sub
    # inf, -inf, 0, nan where libm's are (compared as values: nsz may drop a zero's sign)
    np.testing.assert_array_equal(got[rest], want[rest], err_msg=name)


def test_log_tanh_erf_hold_their_bounds_against_libm_at_the_hard_places_and_over_the_range():
    for name in OURS:
        x = _hard(name)
        _check_against_libm(name, x)
    # the subnormal results were reached (tanh and erf of subnormal arguments)
    assert np.sum((np.abs(_ours("erf", _specials())) < TINY) & (_specials() != 0)) >= 4


def test_each_is_below_one_ulp_from_the_true_value():
    rng = np.random.default_rng(2)
    samples = {
        "log": np.concatenate(
            [np.exp(rng.uniform(-700.0, 700.0, 700)), rng.uniform(0.7, 1.5, 700)]
        ),
        "tanh": np.concatenate([rng.uniform(-3.0, 3.0, 1000), rng.uniform(-1e-4, 1e-4, 200)]),
        "erf": np.concatenate([rng.uniform(-6.0, 6.0, 1000), rng.uniform(-1.3, 1.3, 400)]),
    }
    with mpmath.workprec(120):
        for name, x in samples.items():
            got = _ours(name, x)
            true = [MPMATH[name](mpmath.mpf(float(v))) for v in x]
            spacing = np.spacing(np.abs(np.array([float(t) for t in true])))
            err = np.array([abs(float(mpmath.mpf(float(g)) - t)) for g, t in zip(got, true)])
            ulp = err / spacing
            assert ulp.max() < 1.0, f"{name}: {ulp.max()} ulp at x = {x[np.argmax(ulp)]!r}"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=40))
def test_drawn_doubles(xs):
    x = np.array(xs, dtype=np.float64)
    for name in OURS:
        _check_against_libm(name, x)


def test_the_python_meaning_is_the_compiled_one():
    # the fuzzer runs the generated source as Python (Numba's JIT off): the same functions
    x = np.concatenate([_specials(), np.linspace(-7.0, 7.0, 301), [0.84375, 1.25, 3.0, 6.0]])
    for name in OURS:
        fn = getattr(vmath, name)
        python = np.array([fn(float(v)) for v in x])
        got = _ours(name, x)
        # the kernels fuse multiply-adds (fastmath's "contract"): the last bit may differ
        fin = np.isfinite(python) & (python != 0)
        assert np.all(np.abs(got[fin] - python[fin]) <= np.spacing(np.abs(python[fin]))), name
        np.testing.assert_array_equal(got[~fin], python[~fin], err_msg=name)
        want = _libm(name, x)
        # as Python (no fastmath) the signs of zeros are libm's
        zero = want == 0
        np.testing.assert_array_equal(np.signbit(python[zero]), np.signbit(want[zero]))


def test_float32_kernels_compute_in_float64_and_round_once():
    spec = "y[n, d] = log(x[n, d] * x[n, d] + 1) + tanh(x[n, d]) * erf(x[n, d])"
    op = derivgrad.define(spec, x=(3, 4))
    x = np.random.default_rng(3).uniform(-5.0, 5.0, (37, 29)).astype(np.float32)
    got = op.forward(x=x)
    assert got.dtype == np.float32
    xd = x.astype(np.float64).ravel()
    want = np.array([math.log(v * v + 1) + math.tanh(v) * math.erf(v) for v in xd])
    want32 = want.astype(np.float32).reshape(x.shape)
    # float64 inside, one rounding to float32 at the store: within one float32 ulp of libm's
    assert np.all(np.abs(got - want32) <= np.spacing(np.abs(want32)))


def test_kernels_call_them_in_phases_compiled_without_reassociation():
    spec = "y[n, d] = log(1 + exp(x[n, d])) + tanh(x[n, d]) + erf(x[n, d])"
    op = derivgrad.define(spec, x=(2, 3))
    src = op.source()
    for libm in ("math.log(", "math.tanh(", "math.erf(", "math.exp("):
        assert libm not in src
    calls = 0
    for block in src.split("\n\n\n"):
        if block.startswith("@numba.njit") and any(
            f in block for f in ("_log(", "_tanh(", "_erf(", "_exp(")
        ):
            calls += 1
            assert '"reassoc"' not in block.splitlines()[0]
    assert calls >= 2  # the forward and the backward
    x = np.random.default_rng(1).uniform(-30.0, 30.0, (7, 9))
    want = np.log1p(np.exp(x)) + np.tanh(x) + np.vectorize(math.erf)(x)
    np.testing.assert_allclose(op.forward(x=x), want, rtol=1e-14, atol=0)
    dy = np.random.default_rng(2).standard_normal(x.shape)
    dwant = dy * (
        1 / (1 + np.exp(-x)) + 1 / np.cosh(x) ** 2 + 2 / math.sqrt(math.pi) * np.exp(-(x**2))
    )
    # 1 - tanh² cancels where tanh is near ±1: absolute error of a few ulp of 1 there
    np.testing.assert_allclose(op.backward(dy, x=x)["x"], dwant, rtol=1e-13, atol=1e-15)
