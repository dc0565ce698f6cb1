"""``max=`` and ``min=`` in ``derivgrad.define``: the tie rule (the first extreme in row-major
order of the reduced indices, as the built-in max pooling), every face (kernels in both dtypes
against NumPy formulas written here, the proof, the documents, ``op.check``, the reference
interpreter on ties), and what the reductions are for: a stable softmax, log-sum-exp and
cross-entropy that stay finite where the plain formulas give NaN."""

from __future__ import annotations

import re

import notation_reference as ref
import numpy as np
import pytest

import derivgrad
from derivgrad import kernels as K
from derivgrad.errors import GradcheckError
from derivgrad.notation import DefineError

RANGE = "m[i] max= s[i, j]\nn[i] min= s[i, j]\ny[i] = m[i] * 2 - n[i]"


def _ties(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Values from {-1, -0.5, 0, 0.5, 1}: most rows and windows hold several equal extremes."""
    return np.random.default_rng(seed).integers(-2, 3, shape) / 2.0


def _onehot_rows(idx: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((idx.size, width))
    out[np.arange(idx.size), idx] = 1.0
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ties_go_to_the_first_extreme_in_both_dtypes(dtype):
    op = derivgrad.define(RANGE, s=(3, 5))
    s = _ties((6, 7), 1).astype(dtype)
    assert any(np.sum(row == row.max()) > 1 for row in s)  # the draw has ties
    want = 2 * s.max(axis=1) - s.min(axis=1)
    np.testing.assert_array_equal(op.forward(s=s), want.astype(dtype))
    dy = np.random.default_rng(2).standard_normal(6).astype(dtype)
    # np.argmax and np.argmin return the first of equal entries
    g = 2 * dy[:, None] * _onehot_rows(s.argmax(axis=1), 7) - dy[:, None] * _onehot_rows(
        s.argmin(axis=1), 7
    )
    np.testing.assert_allclose(op.backward(dy, s=s)["s"], g, rtol=1e-6)
    # the reference interpreter (written apart) agrees on the forward of the tied values
    np.testing.assert_array_equal(ref.output(RANGE, {"s": s.astype(np.float64)}), want)
    # a NaN, once met, is the row's maximum and minimum (it propagates, as np.max's)
    s[1, 3] = np.nan
    y = op.forward(s=s)
    assert np.isnan(y[1]) and np.isfinite(np.delete(y, 1)).all()


POOL = "y[c, i, j] max= x[c, 2*i + u, 2*j + v]"


@pytest.mark.parametrize("dtype", [np.float64])  # float32: the row test above (one compile less)
def test_max_pooling_in_the_notation_routes_ties_like_the_builtin(dtype):
    op = derivgrad.define(POOL, x=(2, 4, 4), ranges={"u": 2, "v": 2})
    x = _ties((3, 6, 8), 3).astype(dtype)
    win = x.reshape(3, 3, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(3, 3, 4, 4)
    np.testing.assert_array_equal(op.forward(x=x), win.max(axis=-1))
    dy = np.random.default_rng(4).standard_normal((3, 3, 4)).astype(dtype)
    first = win.argmax(axis=-1)  # row-major in (u, v): the window's first maximum
    g = np.zeros((3, 3, 4, 4))
    np.put_along_axis(g, first[..., None], dy[..., None].astype(np.float64), axis=-1)
    g = g.reshape(3, 3, 4, 2, 2).transpose(0, 1, 3, 2, 4).reshape(3, 6, 8)
    np.testing.assert_allclose(op.backward(dy, x=x)["x"], g, rtol=1e-6)
    # the built-in max pooling's kernels, on the same tied input, route the same way
    yb, idx = K.maxpool2d_forward(x.astype(np.float64)[None], 2, 2)
    np.testing.assert_array_equal(yb[0], op.forward(x=x))
    gb = K.maxpool2d_backward(dy.astype(np.float64)[None], idx, (1, *x.shape))
    np.testing.assert_allclose(gb[0], g, rtol=1e-6)


@pytest.mark.parametrize(
    "spec, shapes, ranges",
    [
        (RANGE, {"s": (2, 3)}, None),
        (POOL, {"x": (1, 4, 4)}, {"u": 2, "v": 2}),
        ("y[n, i] min= x[n, 2*i + u, v] * w[u, v]", {"x": (2, 5, 2), "w": (2, 2)}, None),
        ("L[] max= x[i, j] * x[i, j]", {"x": (2, 3)}, None),
    ],
)
def test_the_closed_form_is_proved_and_printed(spec, shapes, ranges):
    op = derivgrad.define(spec, **shapes, ranges=ranges)
    d = op.derive()
    assert d.verify()
    rules = str(op.sections(d))
    assert "operatorname*{arg" in rules and "first maximum (minimum) in row-major" in rules


def test_the_proof_sees_a_wrong_tie_rule():
    # the instance's closed form with its arg-max indicator replaced by the last maximum's
    # (FirstMax on the reversed row) must not be proved equal to the chain rule
    import derivgrad.notation.codegen as cg
    from derivgrad.symbolic.functions import FirstMax

    op = derivgrad.define("m[i] max= s[i, j]", s=(1, 3))
    saved = cg.FirstMax
    cg.FirstMax = lambda k, *row: FirstMax(len(row) - 1 - k, *reversed(row))
    try:
        with pytest.raises(AssertionError, match="closed form .*FirstMax.* != chain rule"):
            op.derive().verify()
    finally:
        cg.FirstMax = saved


def test_op_check_holds_a_hand_written_backward_and_rejects_the_last_maximum():
    op = derivgrad.define("m[i] max= s[i, j]", s=(3, 4))

    def first(dy, s):
        return {"s": dy[:, None] * _onehot_rows(np.argmax(s, axis=1), s.shape[1])}

    def last(dy, s):
        k = s.shape[1] - 1 - np.argmax(s[:, ::-1], axis=1)
        return {"s": dy[:, None] * _onehot_rows(k, s.shape[1])}

    assert op.check(first, examples=3).passed
    # random values have no ties, so the last maximum is the first: the two agree there
    assert op.check(last, examples=3).passed
    s = _ties((3, 4), 5)
    dy = np.ones(3)
    assert not np.array_equal(first(dy, s)["s"], last(dy, s)["s"])
    np.testing.assert_array_equal(op.backward(dy, s=s)["s"], first(dy, s)["s"])
    with pytest.raises(GradcheckError):
        op.check(lambda dy, s: {"s": 2 * first(dy, s)["s"]}, examples=2, shrink=False)


@pytest.mark.parametrize(
    "spec, col, what",
    [
        ("m[i] max= s[i]", 6, "every index here is on the left"),
        ("m[i] min= s[i] + t[i]", 6, "use '=' for an elementwise"),
        ("m[i] *= s[i, j]", 1, "only '=', '+=', 'max=' and 'min='"),
        ("m[i] max= s[i, j] max= 2", 19, "syntax error"),
    ],
)
def test_bad_reductions_are_one_line_errors(spec, col, what):
    with pytest.raises(DefineError, match=f"statement 1 .*column {col}: .*{re.escape(what)}") as e:
        derivgrad.define(
            spec, s=(2, 3) if "j" in spec else (2,), **({"t": (2,)} if "t[" in spec else {})
        )
    assert "\n" not in str(e.value)


def test_a_max_statement_adds_no_constant_term_warning(capsys):
    derivgrad.define("m[i] max= s[i, j] + b[i]", s=(2, 3), b=(2,))
    assert "reads none of the summed" not in capsys.readouterr().err


# -- what the reductions are for: numerically stable layers ---------------------------------
# the same text and example shapes as tests/test_define_outputs.py: one compile for both
SOFTMAX = """m[n] max= z[n, c]
e[n, c] = exp(z[n, c] - m[n])
s[n] += e[n, c]
lse[n] = m[n] + log(s[n])
p[n, c] = e[n, c] / s[n]"""
CROSS_ENTROPY = """m[n] max= z[n, c]
e[n, c] = exp(z[n, c] - m[n])
s[n] += e[n, c]
L[] += t[n, c] * (m[n] + log(s[n]) - z[n, c]) / len(n)"""


def _softmax64(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_stable_softmax_has_no_nan_for_float32_logits_of_std_50():
    z = (np.random.default_rng(6).standard_normal((16, 10)) * 50).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        plain = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert np.isnan(plain).any()  # what the issue found: exp overflows, inf / inf
    op = derivgrad.define(SOFTMAX, z=(2, 3))
    out = op.forward(z=z)
    p, lse = out["p"], out["lse"]
    want = _softmax64(z)
    z64 = z.astype(np.float64)
    assert np.isfinite(p).all() and np.isfinite(lse).all()
    np.testing.assert_allclose(p, want, atol=1e-6)
    m = z64.max(axis=1)
    np.testing.assert_allclose(lse, m + np.log(np.exp(z64 - m[:, None]).sum(axis=1)), rtol=1e-6)
    dy = np.random.default_rng(7).standard_normal(z.shape).astype(np.float32)
    g = op.backward({"lse": np.zeros(16, np.float32), "p": dy}, z=z)["z"]
    gw = want * (dy - (dy * want).sum(axis=1, keepdims=True))
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, gw, atol=1e-5)
    torch = pytest.importorskip("torch")
    zt = torch.tensor(z, requires_grad=True)
    pt = torch.softmax(zt, dim=1)
    pt.backward(torch.tensor(dy))
    np.testing.assert_allclose(p, pt.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(lse, torch.logsumexp(zt, dim=1).detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(g, zt.grad.numpy(), atol=1e-5)


def test_cross_entropy_with_a_logit_of_100_is_finite():
    z = np.array([[100.0, 0.0, -3.0], [1.0, 2.0, 3.0], [-100.0, 100.0, 50.0]], np.float32)
    t = np.eye(3, dtype=np.float32)[[0, 2, 1]]
    op = derivgrad.define(CROSS_ENTROPY, z=(2, 3), t=(2, 3))
    loss = op.forward(z=z, t=t)
    g = op.backward(np.float32(1.0), z=z, t=t)
    lse = z.astype(np.float64).max(axis=1) + np.log(
        np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)
    )
    want = float(np.mean(lse - (t * z).sum(axis=1)))
    assert np.isfinite(loss) and abs(float(loss) - want) <= 1e-5 * max(1.0, abs(want))
    gz = (_softmax64(z) - t) / 3
    assert np.isfinite(g["z"]).all()
    np.testing.assert_allclose(g["z"], gz, atol=1e-6)
    # the first row's true loss is 0 (to float32): log(e^0 + e^-100 + e^-103) - 0
    assert float(op.forward(z=z[:1], t=t[:1])) == pytest.approx(0.0, abs=1e-6)
    torch = pytest.importorskip("torch")
    zt = torch.tensor(z, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor([0, 2, 1]))
    lt.backward()
    assert float(loss) == pytest.approx(float(lt.detach()), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(g["z"], zt.grad.numpy(), atol=1e-6)


def test_log_sum_exp_and_cross_entropy_are_proved():
    op = derivgrad.define(CROSS_ENTROPY, z=(2, 3), t=(2, 3))
    assert op.derive().verify()
