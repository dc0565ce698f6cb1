"""A checking tool must never pass NaN (issue 17, finding 5): gradcheck, check_op with a
replacement kernel, and the comparison ``derivgrad check`` and the examples share."""

import math

import numpy as np
import pytest

from derivgrad import gradcheck
from derivgrad.checks.properties import check_op, compare
from derivgrad.errors import GradcheckError
from derivgrad.registry import OPS


def square(x):
    return x * x


X = {"x": np.array([1.0, -2.0, 3.0])}


def test_nan_or_inf_analytic_gradients_fail():
    for bad in (np.nan, np.inf, -np.inf):
        g = 2 * X["x"]
        g[1] = bad
        for mode in ("full", "fast"):
            with pytest.raises(GradcheckError) as e:
                gradcheck(square, X, {"x": g}, upstream=np.ones(3), mode=mode)
            assert e.value.report.failures and math.isinf(e.value.report.max_abs_error)


def test_a_function_that_returns_nan_fails():
    f = lambda x: np.where(x > 2, np.nan, x * x)  # noqa: E731
    with pytest.raises(GradcheckError):
        gradcheck(f, X, {"x": 2 * X["x"]}, upstream=np.ones(3))


@pytest.mark.parametrize(
    "kw, word",
    [
        (dict(eps=math.inf), "eps"),
        (dict(eps=math.nan), "eps"),
        (dict(eps=0.0), "eps"),
        (dict(eps=-1e-5), "eps"),
        (dict(rtol=math.nan), "rtol"),
        (dict(atol=math.inf), "atol"),
        (dict(rtol=-1.0), "rtol"),
    ],
)
def test_non_finite_or_negative_steps_and_tolerances_are_refused(kw, word):
    with pytest.raises(ValueError, match=word):
        gradcheck(square, X, {"x": 2 * X["x"]}, upstream=np.ones(3), **kw)


def test_non_finite_inputs_or_upstream_are_refused():
    with pytest.raises(ValueError, match=r"inputs\['x'\]"):
        gradcheck(square, {"x": np.array([1.0, np.nan])}, {"x": np.zeros(2)}, upstream=np.ones(2))
    with pytest.raises(ValueError, match="upstream"):
        gradcheck(square, X, {"x": 2 * X["x"]}, upstream=np.array([1.0, np.inf, 1.0]))


def test_compare_is_inf_for_nan_inf_and_shape_mismatch():
    a = np.array([1.0, 2.0])
    assert compare(a, a) == 0.0
    assert compare(np.array([1.0, np.nan]), a) == math.inf
    assert compare(a, np.array([np.inf, 2.0])) == math.inf
    assert compare(a[:1], a) == math.inf
    assert compare(np.array([np.nan]), np.array([np.nan])) == math.inf


def _face(transform):
    def face(d, v, up):
        y, g = OPS["relu"].kernel(d, v, up)
        return transform(y, g)

    return face


@pytest.mark.parametrize(
    "transform",
    [
        lambda y, g: (np.full_like(y, np.nan), g),  # NaN forward
        lambda y, g: (y, {k: np.full_like(v, np.nan) for k, v in g.items()}),  # NaN gradient
        lambda y, g: (y, {k: v[..., :1] for k, v in g.items()}),  # wrong shape
        lambda y, g: (y, {}),  # no gradient at all
        lambda y, g: 1 / 0,  # a kernel that raises
    ],
    ids=["nan-forward", "nan-grad", "wrong-shape", "no-grad", "raises"],
)
def test_check_op_fails_a_kernel_that_returns_nan_or_nothing(transform):
    r = check_op("relu", examples=3, seed=0, kernel=_face(transform), shrink=False)
    assert not r.passed and r.message
