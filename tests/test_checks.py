"""The checks behind ``derivgrad check``: every registry op passes, and planted bugs —
a missing flip, an off-by-one in padding, a dropped batch element, a race that loses
updates, a batchnorm backward missing a term — are caught.  These are the tests of the
tests."""

import os
import subprocess
import sys

import numpy as np
import pytest

from derivgrad import kernels as K
from derivgrad.checks.properties import check_op
from derivgrad.registry import OPS

_conv_kernel = OPS["conv2d"].kernel
_batchnorm_kernel = OPS["batchnorm2d"].kernel

EXAMPLES = int(os.environ.get("DERIVGRAD_CHECK_EXAMPLES", "6"))


@pytest.mark.parametrize("name", [n for n in OPS if n != "lenet"])
def test_every_op_passes_its_checks(name):
    r = check_op(name, examples=EXAMPLES, seed=1)
    assert r.passed, r.message
    assert r.cases == EXAMPLES


def _conv_with(dx_fn=None, dw_fn=None, db_fn=None):
    """The registry's conv face with one gradient replaced by a buggy computation."""

    def face(d, v, up):
        y, g = _conv_kernel(d, v, up)
        P = d.params
        if len(P["input"]) != 2:
            return y, g
        x = v["x"].reshape(d.extra["x_full"].shape)
        w = v["w"].reshape(d.extra["w_full"].shape)
        dy = up.reshape((x.shape[0], w.shape[0]) + d.extra["out_size"])
        hp = (P["stride"], P["padding"], P["dilation"])
        if dx_fn:
            g["x"] = dx_fn(dy, x, w, hp).reshape(v["x"].shape)
        if dw_fn:
            g["w"] = dw_fn(dy, x, w, hp).reshape(v["w"].shape)
        if db_fn and "b" in g:
            g["b"] = db_fn(dy)
        return y, g

    return face


def missing_flip(dy, x, w, hp):
    # dX computed with the filter not rotated by 180 degrees
    return K.conv2d_backward(dy, x, np.ascontiguousarray(w[:, :, ::-1, ::-1]), *hp)[0]


def off_by_one_padding(dy, x, w, hp):
    dx = K.conv2d_backward(dy, x, w, *hp)[0]
    return np.roll(dx, 1, axis=-1)


def dropped_batch_element(dy, x, w, hp):
    if x.shape[0] == 1:
        return K.conv2d_backward(dy, x, w, *hp)[1]
    return K.conv2d_backward(dy[:-1], x[:-1], w, *hp)[1]


def racy_bias_sum(dy):
    # a += from several threads loses some updates, at random
    rng = np.random.default_rng()
    keep = rng.random(dy.shape[0] * dy.shape[2] * dy.shape[3]) > 0.3
    flat = dy.transpose(1, 0, 2, 3).reshape(dy.shape[1], -1)
    return (flat * keep).sum(axis=1)


@pytest.mark.parametrize(
    "bug",
    [
        dict(dx_fn=missing_flip),
        dict(dx_fn=off_by_one_padding),
        dict(dw_fn=dropped_batch_element),
        dict(db_fn=racy_bias_sum),
    ],
    ids=["missing flip", "off-by-one padding", "dropped batch element", "race"],
)
def test_planted_conv_bugs_are_caught(bug):
    r = check_op("conv2d", examples=40, seed=0, kernel=_conv_with(**bug), shrink=False)
    assert not r.passed
    assert "derivgrad derive conv2d" in r.command


def test_planted_batchnorm_bug_is_caught():
    """dx without its −x̂·mean(δ x̂) term.  An all-ones upstream cannot see this bug (the
    term is x̂·mean(x̂) = 0 then); the checks draw a non-uniform upstream and catch it."""

    def buggy(d, v, up):
        y, g = _batchnorm_kernel(d, v, up)
        _, cache = K.batchnorm2d_forward(v["x"], v["gamma"], v["beta"], eps=1e-5)
        term = (up * cache.xhat).mean(axis=(0, 2, 3), keepdims=True) * cache.xhat
        g["x"] = g["x"] + (cache.gamma * cache.invstd)[None, :, None, None] * term
        return y, g

    assert not check_op("batchnorm2d", examples=20, kernel=buggy, shrink=False).passed
    # and the same bug really is invisible to an all-ones upstream:
    d = OPS["batchnorm2d"].build(batch=2, channels=1, input=(1, 2))
    v = {k: np.random.default_rng(0).standard_normal(a.shape) for k, a in d.input_arrays.items()}
    ones = np.ones(d.upstream_array.shape)
    assert np.allclose(buggy(d, v, ones)[1]["x"], _batchnorm_kernel(d, v, ones)[1]["x"])


def test_a_correct_replacement_kernel_passes():
    """The use the examples show: a user's own conv backward, held to the ground truth."""
    import naive

    def mine(d, v, up):
        P = d.params
        x = v["x"].reshape(d.extra["x_full"].shape)
        w = v["w"].reshape(d.extra["w_full"].shape)
        b = v.get("b")
        y = naive.conv2d(x, w, b, P["stride"], P["padding"], P["dilation"])
        dx, dw, db = naive.conv2d_backward(
            up.reshape(y.shape), x, w, P["stride"], P["padding"], P["dilation"]
        )
        g = {"x": dx.reshape(v["x"].shape), "w": dw.reshape(v["w"].shape)}
        if b is not None:
            g["b"] = db
        return y.reshape(up.shape), g

    assert check_op("conv2d", examples=10, kernel=mine).passed


def test_check_command_prints_the_table():
    out = subprocess.run(
        [sys.executable, "-m", "derivgrad", "check", "relu", "softmax", "--examples", "3"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "relu" in out.stdout and "pass" in out.stdout and "largest error" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "derivgrad", "check", "nosuchop"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown op" in bad.stderr


def test_symbolic_oracle_mode_of_gradcheck():
    import derivgrad

    d = derivgrad.derive("linear", features=3, outputs=2)
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal(3), rng.standard_normal((2, 3)), rng.standard_normal(2)
    up = rng.standard_normal(2)
    f = lambda x, W, b: W @ x + b
    good = dict(x=W.T @ up, W=np.outer(up, x), b=up)
    derivgrad.gradcheck(f, dict(x=x, W=W, b=b), good, mode="symbolic", oracle=d, upstream=up)
    with pytest.raises(derivgrad.GradcheckError, match="W"):
        derivgrad.gradcheck(
            f,
            dict(x=x, W=W, b=b),
            dict(good, W=np.outer(x[:2], up[:1].repeat(3))),
            mode="symbolic",
            oracle=d,
            upstream=up,
        )


def test_gradcheck_reports_kinks_instead_of_failing():
    import derivgrad

    x = np.array([1e-6, -1.0, 2.0])
    rep = derivgrad.gradcheck(
        lambda x: np.maximum(x, 0).sum(), dict(x=x), dict(x=(x > 0).astype(float))
    )
    assert rep.kinks and rep.kinks[0][1] == (0,)
