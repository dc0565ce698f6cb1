"""The squared-error loss (derivgrad/ops/squared_error.py), added as one module, and seed
004's conv -> ReLU -> loss example built on it; worked problem 13 with the notes' numbers."""

import numpy as np
import pytest
from tolerances import assert_close

import derivgrad
from derivgrad.checks.properties import check_op
from derivgrad.documents.render import render, to_markdown
from derivgrad.ops.squared_error import (
    _seed004_doc,
    conv_relu_loss,
    squared_error_backward,
    squared_error_forward,
)
from derivgrad.registry import OPS


def test_registered_proved_and_rendered():
    assert OPS["squared_error"].title == "Squared-error loss"
    d = derivgrad.derive("squared_error", input="2x3")
    assert d.verify()
    assert r"\frac{\partial L}{\partial o_{1,1}}" in render(d, "latex")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_numpy_and_the_symbolic_ground_truth(dtype):
    rng = np.random.default_rng(1)
    o, y = rng.standard_normal((2, 2, 3)).astype(dtype)
    loss = np.array(squared_error_forward(o, y), dtype)  # summed in float64, returned as float
    assert_close(loss, np.sum((y.astype(float) - o) ** 2), dtype)
    assert_close(squared_error_backward(o, y, 0.5), 0.5 * 2 * (o - y), dtype)
    d = derivgrad.derive("squared_error", input=(2, 3))
    v = dict(o=o.astype(np.float64), y=y.astype(np.float64))
    assert_close(squared_error_backward(o, y), d.lambdify("o")(**v), dtype)
    assert_close(-squared_error_backward(o, y), d.lambdify("y")(**v), dtype)


def test_central_differences_and_property_check():
    result = check_op("squared_error", examples=8, seed=2)
    assert result.passed, result.message


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: squared_error_forward(np.zeros(3), np.zeros(4)), ValueError, ["shape"]),
        (lambda: squared_error_forward(np.arange(3), np.arange(3)), TypeError, ["float32"]),
        (
            lambda: squared_error_backward(np.zeros(2, np.float32), np.zeros(2)),
            TypeError,
            ["one dtype"],
        ),
        (lambda: derivgrad.derive("squared_error", input=0), ValueError, ["input"]),
    ],
)
def test_bad_inputs_name_the_argument(call, error, words):
    with pytest.raises(error) as e:
        call()
    for w in words:
        assert w in str(e.value)


def test_seed004_both_paths_are_proved_and_agree_with_central_differences():
    d = conv_relu_loss()
    assert d.verify()
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((3, 3)), rng.standard_normal((2, 2))
    t = rng.standard_normal((2, 2))
    t_syms = d.extra["targets"]
    import sympy as sp

    L = sp.lambdify(
        [
            list(d.input_arrays["x"].reshape(-1)),
            list(d.input_arrays["w"].reshape(-1)),
            list(t_syms.reshape(-1)),
        ],
        d.output_array[0],
        modules=[{"Relu": lambda z: max(z, 0.0), "Step": lambda z: float(z > 0)}, "numpy"],
    )
    gw = sp.lambdify(
        [
            list(d.input_arrays["x"].reshape(-1)),
            list(d.input_arrays["w"].reshape(-1)),
            list(t_syms.reshape(-1)),
        ],
        list(d.grad_array("w").reshape(-1)),
        modules=[{"Relu": lambda z: max(z, 0.0), "Step": lambda z: float(z > 0)}, "numpy"],
    )
    h = 1e-6
    args = lambda ww: (list(x.reshape(-1)), list(ww.reshape(-1)), list(t.reshape(-1)))  # noqa: E731
    numeric = []
    for i in range(4):
        e = np.zeros(4)
        e[i] = h
        numeric.append((L(*args(w + e.reshape(2, 2))) - L(*args(w - e.reshape(2, 2)))) / (2 * h))
    np.testing.assert_allclose(gw(*args(w)), numeric, rtol=1e-5, atol=1e-7)
    text = to_markdown(_seed004_doc())
    assert "Path 1" in text and "Path 2" in text and "proved it" in text
    assert r"\frac{\partial L}{\partial x_{1,1}} &= D_{1,1} w_{1,1}" in text  # as the notes


def test_problem_13_uses_the_notes_numbers_and_catches_the_planted_bug():
    from derivgrad.documents.worked import _gradcheck_doc

    text = to_markdown(_gradcheck_doc())
    assert "x = (2, 1, 3)" in text and "= (3, 6, 2)" in text
    assert "the check catches it" in text and "NOT" not in text
