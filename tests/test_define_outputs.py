"""Several outputs in ``derivgrad.define``: every statement no later one reads is an output;
``forward`` returns ``{name: array}``, ``backward`` takes ``{name: upstream}``; the derivation
joins them in statement order.  Held to NumPy formulas written here, the proof and op.check."""

from __future__ import annotations

import re

import numpy as np
import pytest

import derivgrad
from derivgrad.errors import GradcheckError, ParamError

SOFTMAX_AND_LSE = """m[n] max= z[n, c]
e[n, c] = exp(z[n, c] - m[n])
s[n] += e[n, c]
lse[n] = m[n] + log(s[n])
p[n, c] = e[n, c] / s[n]"""


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _backward(dy: dict, z: np.ndarray) -> dict:
    """d/dz of Σ dlse · lse + Σ dp · p, by hand: lse' = softmax, p' the softmax Jacobian."""
    p = _softmax(z.astype(np.float64))
    dp = dy["p"] - (dy["p"] * p).sum(axis=1, keepdims=True)
    return {"z": p * dy["lse"][:, None] + p * dp}


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_forward_returns_each_output_and_backward_takes_an_upstream_for_each(dtype, tol):
    op = derivgrad.define(SOFTMAX_AND_LSE, z=(2, 3))
    assert op.outputs == ("lse", "p")
    z = (np.random.default_rng(0).standard_normal((5, 4)) * 30).astype(dtype)
    out = op.forward(z=z)
    assert list(out) == ["lse", "p"]
    z64 = z.astype(np.float64)
    lse = z64.max(axis=1) + np.log(np.exp(z64 - z64.max(axis=1, keepdims=True)).sum(axis=1))
    np.testing.assert_allclose(out["lse"], lse, rtol=tol)
    np.testing.assert_allclose(out["p"], _softmax(z64), atol=tol)
    rng = np.random.default_rng(1)
    dy = {
        "lse": rng.standard_normal(5).astype(dtype),
        "p": rng.standard_normal((5, 4)).astype(dtype),
    }
    np.testing.assert_allclose(op.backward(dy, z=z)["z"], _backward(dy, z)["z"], atol=tol * 10)
    # each output's upstream counts once: the lse part alone is the softmax
    only = op.backward({"lse": np.ones(5, dtype), "p": np.zeros((5, 4), dtype)}, z=z)["z"]
    np.testing.assert_allclose(only, _softmax(z64), atol=tol * 10)


def test_the_joined_derivation_is_proved_and_the_documents_say_so():
    op = derivgrad.define(SOFTMAX_AND_LSE, z=(2, 3))
    d = op.derive()
    assert d.output_array.shape == (2 + 6,)  # lse's 2 entries, then p's 6
    assert d.verify()
    text = str(op.sections(d))
    assert "Several outputs" in text and r"{\\bar{\\mathit{lse}}}_{n}" in text


def test_op_check_splits_the_upstream_and_joins_the_outputs():
    op = derivgrad.define(SOFTMAX_AND_LSE, z=(2, 3))
    assert op.check(_backward, examples=3).passed

    def wrong(dy, z):  # the lse upstream dropped
        return _backward({"lse": 0 * dy["lse"], "p": dy["p"]}, z)

    with pytest.raises(GradcheckError):
        op.check(wrong, examples=2, shrink=False)


def test_a_scalar_and_a_tensor_output():
    op = derivgrad.define("h[i] = x[i] * x[i]\nL[] += h[i]\nq[i] = h[i] * 3", x=(3,))
    assert op.outputs == ("L", "q")
    x = np.array([1.0, -2.0, 0.5])
    out = op.forward(x=x)
    assert out["L"].shape == () and float(out["L"]) == pytest.approx(5.25)
    np.testing.assert_allclose(out["q"], 3 * x * x)
    g = op.backward({"L": np.array(2.0), "q": np.ones(3)}, x=x)["x"]
    np.testing.assert_allclose(g, 2 * 2 * x + 3 * 2 * x)
    assert op.derive().verify()


@pytest.mark.parametrize(
    "dy, what",
    [
        (np.ones(5), "dy must be a dict with an upstream gradient for each output"),
        ({"lse": np.ones(5)}, "for each output (lse, p), got ['lse']"),
        ({"lse": np.ones(4), "p": np.ones((5, 4))}, "dy['lse'] must have the shape of lse"),
    ],
)
def test_a_wrong_upstream_is_a_one_line_error(dy, what):
    op = derivgrad.define(SOFTMAX_AND_LSE, z=(2, 3))
    with pytest.raises(ParamError, match=re.escape(what)) as e:
        op.backward(dy, z=np.zeros((5, 4)))
    assert "\n" not in str(e.value)


def test_one_output_is_still_an_array_and_a_layer_refuses_several():
    op = derivgrad.define("y[i] = x[i] * 2", x=(3,))
    assert op.outputs == ("y",) and isinstance(op.forward(x=np.ones(3)), np.ndarray)
    from derivgrad.nn.defined import Defined

    with pytest.raises(ParamError, match="several outputs \\(lse, p\\)"):
        Defined(derivgrad.define(SOFTMAX_AND_LSE, z=(2, 3)), input="z")
