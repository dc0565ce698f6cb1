"""The sigmoid op, added as one module (derivgrad/ops/sigmoid.py): every face is reached
through the op protocol — registry, derive, check, render, the command line — with no edit
anywhere else.  Ground truth three ways: the symbolic proof, central differences, and an
independent NumPy reference written here."""

import subprocess
import sys

import numpy as np
import pytest
from tolerances import assert_close

import derivgrad
from derivgrad.checks.properties import check_op
from derivgrad.documents.render import render
from derivgrad.ops.sigmoid import sigmoid_backward, sigmoid_forward
from derivgrad.registry import OPS


def _reference(z):
    # independent of the kernel: the textbook formula, in float64, no stabilisation needed
    # for the |z| < 30 used here
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def test_the_registry_finds_the_new_module():
    assert "sigmoid" in OPS
    assert OPS["sigmoid"].title == "Sigmoid"


def test_closed_form_is_proved_and_matches_the_jacobian():
    d = derivgrad.derive("sigmoid", features=4)
    assert d.verify()
    J = d.jacobian("z")
    assert J[0, 1] == 0 and J[2, 2] != 0  # diagonal Jacobian


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_the_reference_and_the_symbolic_ground_truth(dtype):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, 7)).astype(dtype) * 4
    dy = rng.standard_normal((5, 7)).astype(dtype)
    y = sigmoid_forward(z)
    assert y.dtype == dtype
    ref = _reference(z)
    assert_close(y, ref, dtype)
    assert_close(sigmoid_backward(dy, y), dy * ref * (1 - ref), dtype)
    d = derivgrad.derive("sigmoid", features=7)
    truth = d.lambdify("z")
    for row in range(5):
        expected = truth(z=z[row].astype(np.float64), upstream=dy[row].astype(np.float64))
        assert_close(sigmoid_backward(dy[row], y[row]), expected, dtype)


def test_stable_at_large_magnitudes():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    y = sigmoid_forward(z)
    assert np.all(np.isfinite(y))
    assert y[0] == 0.0 and y[2] == 0.5 and y[4] == 1.0
    assert np.isnan(sigmoid_forward(np.array([np.nan]))[0])


def test_central_differences_and_property_check():
    result = check_op("sigmoid", examples=10, seed=1)
    assert result.passed, result.message
    assert result.cases == 10


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: sigmoid_forward(np.arange(3)), TypeError, ["float32", "int"]),
        (lambda: sigmoid_backward(np.zeros(3), np.zeros(4)), ValueError, ["shape"]),
        (
            lambda: sigmoid_backward(np.zeros(3, np.float32), np.zeros(3)),
            TypeError,
            ["one dtype"],
        ),
        (lambda: derivgrad.derive("sigmoid", features=0), ValueError, ["features"]),
        (lambda: derivgrad.derive("sigmoid", classes=3), ValueError, ["unknown parameter"]),
    ],
)
def test_bad_inputs_name_the_argument(call, error, words):
    with pytest.raises(error) as e:
        call()
    for w in words:
        assert w in str(e.value)


def test_renders_and_the_command_line_reaches_it():
    text = render(derivgrad.derive("sigmoid", features=2), "latex")
    assert "Sigmoid" in text and r"\sigma'(z)" in text
    r = subprocess.run(
        [sys.executable, "-m", "derivgrad", "derive", "sigmoid", "--features", "2"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r"\begin{document}" in r.stdout
