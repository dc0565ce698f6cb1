"""The generated kernels' ``exp`` (:func:`derivgrad.notation.vmath.exp`: arithmetic that
vectorises) against libm's, ulp by ulp over the whole range, with the ends and the specials."""

from __future__ import annotations

import math

import numba
import numpy as np

import derivgrad
from derivgrad.notation import vmath

vexp = numba.njit(inline="always")(vmath.exp)  # as the generated modules compile it

TINY = 2.2250738585072014e-308  # the smallest normal double


@numba.njit(fastmath={"nsz", "contract", "arcp"})
def _ours(x, y):
    for i in range(x.size):
        y[i] = vexp(x[i])


def _exp1(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _libm(x: np.ndarray) -> np.ndarray:
    return np.array([_exp1(float(v)) for v in x])


def test_exp_is_within_one_ulp_of_libm_over_its_whole_range():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            np.linspace(-746.0, 711.0, 100_001),
            rng.uniform(-40.0, 40.0, 50_000),
            rng.uniform(-1e-3, 1e-3, 10_000),
            # the ends: the largest finite result, overflow, the last subnormals, underflow
            [709.782712893383, 709.782712893384, 709.7827128933841, 710.0],
            [-708.39, -708.4, -720.0, -744.44, -745.13, -745.1332191019411, -745.14, -800.0],
            [0.0, -0.0, 5e-324, -5e-324, 1e-300, 0.5 * math.log(2), -0.5 * math.log(2)],
            [math.inf, -math.inf, math.nan],
        ]
    )
    got = np.empty_like(x)
    _ours(x, got)
    want = _libm(x)
    normal = np.isfinite(want) & (want >= TINY)
    ulp = np.abs(got[normal] - want[normal]) / np.spacing(want[normal])
    assert ulp.max() <= 1.0, f"{ulp.max()} ulp at x = {x[normal][np.argmax(ulp)]!r}"
    sub = (want > 0) & (want < TINY)
    assert sub.sum() > 1000
    assert np.abs(got[sub] - want[sub]).max() <= 5e-324  # one step of the subnormals
    rest = ~normal & ~sub
    np.testing.assert_array_equal(got[rest], want[rest])  # inf, 0, nan where libm's are


def test_the_python_meaning_is_the_compiled_one():
    # the fuzzer runs the generated source as Python (Numba's JIT off): the same function
    x = np.array([-800.0, -745.0, -700.5, -1.25, -1e-9, 0.0, 0.3, 1.0, 88.7, 709.7, 711.0])
    x = np.concatenate([x, [math.inf, -math.inf, math.nan]])
    got = np.empty_like(x)
    _ours(x, got)
    python = np.array([vmath.exp(float(v)) for v in x])
    # the kernels fuse multiply-adds (fastmath's "contract"): the last bit may differ
    fin = np.isfinite(python)
    assert np.all(np.abs(got[fin] - python[fin]) <= np.spacing(python[fin]))
    np.testing.assert_array_equal(got[~fin], python[~fin])


def test_float32_inputs_are_computed_in_float64():
    x = np.linspace(-80.0, 80.0, 1001).astype(np.float32)
    got = np.empty(x.size, np.float64)
    _ours(x, got)
    want = _libm(x.astype(np.float64))
    assert np.abs(got - want).max() <= np.spacing(want).max()


def test_kernels_call_it_in_phases_compiled_without_reassociation():
    op = derivgrad.define("y[n, d] = x[n, d] * sigmoid(x[n, d])", x=(2, 3))
    src = op.source()
    assert "math.exp" not in src
    for block in src.split("\n\n\n"):
        if "_exp(" in block and block.startswith("@numba.njit"):
            assert '"reassoc"' not in block.splitlines()[0]
    x = np.random.default_rng(1).uniform(-30.0, 30.0, (7, 9))
    want = x / (1.0 + np.exp(-x))
    np.testing.assert_allclose(op.forward(x=x), want, rtol=1e-14, atol=0)
