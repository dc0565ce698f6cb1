"""The symbolic engine: every worked problem of WORKED_PROBLEMS.md derived and checked
against an independent statement of its result, verify() over a parameter grid, and the
kernels against the lambdified ground truth."""

import itertools

import numpy as np
import pytest
import sympy as sp

import derivgrad
from derivgrad import derive
from derivgrad.errors import ParamError
from derivgrad.ops.conv import conv_matrix, conv_matrix_proves_input_gradient
from derivgrad.ops.dense import softmax_jacobian
from derivgrad.ops.pool import routed as pool_routed
from derivgrad.registry import OPS
from derivgrad.symbolic.functions import Relu, Step, WindowMax, plain_form


def _zero(e):
    return sp.simplify(plain_form(e)) == 0


# -- worked problem 1: softmax Jacobian ------------------------------------------------
def test_wp1_softmax_jacobian_is_diag_p_minus_ppT():
    d = derive("softmax", classes=3)
    z = list(d.inputs["z"])
    p = [sp.exp(v) / sum(sp.exp(u) for u in z) for v in z]  # written out independently
    J = d.jacobian("z")  # J[j, i] = ∂p_i/∂z_j
    assert J.shape == (3, 3)
    for i, j in itertools.product(range(3), range(3)):
        assert _zero(J[j, i] - p[i] * ((1 if i == j else 0) - p[j]))  # p_i (δ_ij − p_j)
    Jc = softmax_jacobian(d)
    for i, j in itertools.product(range(3), range(3)):
        assert _zero(Jc[i, j] - J[i, j])  # diag(p) − p pᵀ (symmetric)
    assert d.verify()


# -- worked problem 2: multiclass logistic regression ----------------------------------
def test_wp2_logistic_regression():
    d = derive("logistic_regression", classes=3, features=2, label=2)
    W, b, x = (
        sp.Matrix(d.inputs[k].tolist()) if k == "W" else sp.Matrix(list(d.inputs[k])) for k in "Wbx"
    )
    z = W * x + b
    p = sp.Matrix([sp.exp(v) / sum(sp.exp(u) for u in z) for v in z])
    r = p - sp.Matrix([0, 1, 0])  # p − e_y, y = 2 (1-based)
    rat = lambda e: d._is_zero(e)
    gW, gb, gx = r * x.T, r, W.T * r
    assert all(rat(d.grad("W")[i, j] - gW[i, j]) for i in range(3) for j in range(2))
    assert all(rat(d.grad("b")[i] - gb[i]) for i in range(3))
    assert all(rat(d.grad("x")[j] - gx[j]) for j in range(2))
    assert d.verify()


# -- worked problem 3: skip connection --------------------------------------------------
def test_wp3_skip_connection_matches_the_formula_on_every_sign_region():
    d = derive("residual", features=2, hidden=2)
    assert d.verify()
    f = d.lambdify("x")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, W1, W2, dy = (
            rng.standard_normal(2),
            rng.standard_normal((2, 2)),
            rng.standard_normal((2, 2)),
            rng.standard_normal(2),
        )
        expect = W1.T @ ((W1 @ x > 0) * (W2.T @ dy)) + dy  # W1ᵀ(1[W1x>0] ⊙ W2ᵀδ) + δ
        assert np.allclose(f(x=x, W1=W1, W2=W2, upstream=dy), expect)


# -- worked problem 4: shape arithmetic -------------------------------------------------
def test_wp4_shape_arithmetic():
    from derivgrad.symbolic.shapes import conv_layer, pool_layer, symbolic_output_size

    assert conv_layer((32, 32), 3, 5, 1)["output"] == (1, 28, 28)
    assert conv_layer((32, 32), 3, 5, 1, padding=2)["output"] == (1, 32, 32)
    ten = conv_layer((32, 32), 3, 5, 10, padding=2)
    assert ten["output"] == (10, 32, 32) and ten["weights"] == 750 and ten["params"] == 760
    assert conv_layer((32, 32), 3, 1, 4)["output"][1:] == (32, 32)
    assert pool_layer((24, 24), 20, 2)["output"] == (20, 12, 12)
    f, (n, p, k, s, dl) = symbolic_output_size()
    g = f.subs(dl, 1)
    assert sp.simplify(g.subs({n: 32, p: 2, k: 5, s: 1}) - 32) == 0
    # (n + 2p − k)/s + 1 whenever s divides n + 2p − k
    for nn, pp, kk, ss in [(32, 0, 5, 1), (28, 0, 2, 2), (7, 1, 3, 2)]:
        assert g.subs({n: nn, p: pp, k: kk, s: ss}) == (nn + 2 * pp - kk) // ss + 1


# -- worked problem 5: convolution as a matrix ------------------------------------------
def test_wp5_banded_toeplitz_matrix():
    d = derive("conv1d", input=4, kernel=3, padding=1, bias=False)
    w1, w2, w3 = d.inputs["w"]
    M = conv_matrix(d)
    assert M == sp.Matrix(
        [[w1, w2, w3, 0, 0, 0], [0, w1, w2, w3, 0, 0], [0, 0, w1, w2, w3, 0], [0, 0, 0, w1, w2, w3]]
    )
    assert conv_matrix_proves_input_gradient(d)


@pytest.mark.parametrize(
    "params",
    [
        dict(input=(3, 4), kernel=(2, 2), stride=2, padding=1, channels=2),
        dict(input=(4, 3), kernel=(3, 2), dilation=(1, 2), filters=2),
    ],
)
def test_wp5_matrix_transpose_gives_the_input_gradient_in_general(params):
    assert conv_matrix_proves_input_gradient(derive("conv2d", **params))


# -- worked problem 6: 1-D convolution backward -----------------------------------------
def test_wp6_conv1d_backward():
    d = derive("conv1d", input=4, kernel=3, bias=False)
    x, w, dl = list(d.inputs["x"]), list(d.inputs["w"]), list(d.upstream)
    assert len(dl) == 2
    padded = [0, 0] + dl + [0, 0]  # pad(δ, 2)
    flipped = w[::-1]
    dx = [sum(padded[i + k] * flipped[k] for k in range(3)) for i in range(4)]
    dw = [sum(x[h + i] * dl[i] for i in range(2)) for h in range(3)]  # x ⋆ δ
    assert all(sp.expand(a - b) == 0 for a, b in zip(d.grad("x"), dx))
    assert all(sp.expand(a - b) == 0 for a, b in zip(d.grad("w"), dw))
    assert d.verify()


# -- worked problem 7: 2-D convolution backward, 3x3 input, 2x2 filter --------------------
def test_wp7_conv2d_backward_no_jacobian_required():
    d = derive("conv2d", input=(3, 3), kernel=(2, 2), bias=False)
    assert d.jacobian("x").shape == (3, 3, 2, 2)  # ∂V/∂X: (h_in, w_in, h_out, w_out)
    assert d.jacobian("w").shape == (2, 2, 2, 2)  # ∂V/∂W: (f, f, h_out, w_out)
    X, Wt, dV = (
        np.array(d.inputs["x"].tolist()),
        np.array(d.inputs["w"].tolist()),
        np.array(d.upstream.tolist()),
    )
    P = np.pad(dV, 1)  # pad(dV, f − 1)
    R = Wt[::-1, ::-1]  # rot180(W)
    dX = [
        [sum(P[i + a, j + b] * R[a, b] for a in range(2) for b in range(2)) for j in range(3)]
        for i in range(3)
    ]
    dW = [
        [sum(X[i + a, j + b] * dV[a, b] for a in range(2) for b in range(2)) for j in range(2)]
        for i in range(2)
    ]
    assert all(sp.expand(d.grad("x")[i, j] - dX[i][j]) == 0 for i in range(3) for j in range(3))
    assert all(sp.expand(d.grad("w")[i, j] - dW[i][j]) == 0 for i in range(2) for j in range(2))
    assert d.verify()


# -- worked problem 8: channels, filters, batch -----------------------------------------
def test_wp8_filters_add_up_and_batch_sums_the_weight_gradient():
    d = derive("conv2d", input=(3, 3), kernel=(2, 2), channels=2, filters=2, batch=2, bias=False)
    up = d.upstream_array  # (N, O, HO, WO)
    dx, dw = d.grad_array("x"), d.grad_array("w")
    # the input gradient is the sum of the contributions of each filter
    keep0 = {s: 0 for s in up[:, 1].reshape(-1)}
    keep1 = {s: 0 for s in up[:, 0].reshape(-1)}
    for e in dx.reshape(-1):
        assert sp.expand(e - e.subs(keep0) - e.subs(keep1)) == 0
    # the weight gradient sums over the batch
    n0 = {s: 0 for s in up[1].reshape(-1)}
    n1 = {s: 0 for s in up[0].reshape(-1)}
    for e in dw.reshape(-1):
        assert sp.expand(e - e.subs(n0) - e.subs(n1)) == 0
    assert d.verify()


def test_wp8_index_rule_derived_by_sympy_matches_the_closed_form():
    from derivgrad.symbolic import index_rules as R

    rng = np.random.default_rng(1)
    for s, p, dil in [(1, 0, 1), (2, 1, 1), (1, 1, 2)]:
        _, dx_rule, dw_rule, _ = R.conv2d_rules(s, p, dil)
        d = derive(
            "conv2d",
            input=(4, 4),
            kernel=(2, 2),
            stride=s,
            padding=p,
            dilation=dil,
            channels=2,
            filters=2,
            bias=False,
        )
        vals = {k: rng.standard_normal(v.shape) for k, v in d.input_arrays.items()}
        up = rng.standard_normal(d.upstream_array.shape)
        gx = d.lambdify("x")(**vals, upstream=up)
        gw = d.lambdify("w")(**vals, upstream=up)
        HO = d.extra["out_size"][0]
        sizes = {
            R.C: 2,
            R.O: 2,
            R.KH: 2,
            R.KW: 2,
            R.HO: HO,
            R.WO: HO,
            sp.Symbol("N", integer=True, positive=True): 1,
        }
        arrays = {"x": vals["x"][None], "w": vals["w"], r"\delta": up[None]}
        for c, a, b in [(0, 0, 0), (1, 2, 3), (0, 3, 1)]:
            v = R.evaluate(dx_rule, sizes, arrays, {R.n: 0, R.cp: c, R.a: a, R.b: b})
            assert np.isclose(v, gx[c, a, b])
        for o, c, a, b in [(0, 1, 0, 1), (1, 0, 1, 1)]:
            v = R.evaluate(dw_rule, sizes, arrays, {R.op_: o, R.cp: c, R.a: a, R.b: b})
            assert np.isclose(v, gw[o, c, a, b])


# -- worked problem 9: stride, padding, dilation -------------------------------------------
@pytest.mark.parametrize("s,p,dl", list(itertools.product((1, 2), (0, 1, 2), (1, 2))))
def test_wp9_verify_grid(s, p, dl):
    for C, O in ((1, 2), (2, 1)):
        assert derive(
            "conv2d",
            input=(5, 4),
            kernel=(2, 2),
            stride=s,
            padding=p,
            dilation=dl,
            channels=C,
            filters=O,
        ).verify()
        assert derive(
            "conv1d", input=5, kernel=2, stride=s, padding=p, dilation=dl, channels=C, filters=O
        ).verify()


# -- worked problem 10: pooling backward ------------------------------------------------
def test_wp10_maxpool_routes_to_the_first_maximum():
    d = derive("maxpool2d", input=(4, 4), kernel=2, region=7)
    assert d.verify()
    routed = pool_routed(d)
    x = np.array(d.inputs["x"].tolist())
    ranks = np.vectorize(lambda s: int(d.extra["region_point"][s]))(x)
    dl = np.array(d.upstream.tolist())
    for i, j in itertools.product(range(2), range(2)):
        win = ranks[2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
        a, b = np.unravel_index(np.argmax(win), (2, 2))
        assert routed[2 * i + a, 2 * j + b] == dl[i, j]
    assert sum(1 for e in routed.reshape(-1) if e != 0) == 4
    # ties: the symbolic rule sends the gradient to the first entry, as the kernels do
    g = d.grad_array("x")
    same = {s: 1 for s in d.input_arrays["x"].reshape(-1)}
    assert g[0, 0].subs(same) == dl[0, 0] and g[0, 1].subs(same) == 0


def test_wp10_sympy_max_would_split_ties_but_ours_does_not():
    a, b = sp.symbols("a b")
    assert sp.diff(sp.Max(a, b), a).subs({a: 1, b: 1}) == sp.Rational(1, 2)
    assert sp.diff(WindowMax(a, b), a).subs({a: 1, b: 1}) == 1
    assert sp.diff(WindowMax(a, b), b).subs({a: 1, b: 1}) == 0
    assert sp.diff(Relu(a), a).subs(a, 0) == 0


def test_wp10_avgpool_k_equals_s_is_upsampling():
    d = derive("avgpool2d", input=(4, 6), kernel=2)
    dl = np.array(d.upstream.tolist())
    assert np.array_equal(
        np.array(d.grad("x").tolist()), np.kron(dl, np.ones((2, 2), dtype=object)) / 4
    )
    assert d.verify()


# -- worked problem 11: batchnorm for CNNs -----------------------------------------------
def test_wp11_batchnorm_is_the_fully_connected_one_after_reshaping():
    import naive

    d = derive("batchnorm2d", batch=2, channels=2, input=(1, 2))
    assert d.verify()
    rng = np.random.default_rng(3)
    v = {k: rng.standard_normal(a.shape) for k, a in d.input_arrays.items()}
    up = rng.standard_normal(d.upstream_array.shape)
    _, _, _, back = naive.batchnorm2d(v["x"], v["gamma"], v["beta"], 1e-5)  # (BHW, C) formulas
    for got, ref in zip(
        (d.lambdify(k)(**v, upstream=up) for k in ("x", "gamma", "beta")), back(up)
    ):
        assert np.allclose(got, ref, rtol=1e-9, atol=1e-12)


# -- worked problem 12: the LeNet network ------------------------------------------------
def test_wp12_lenet_parameter_counts():
    from derivgrad.training.model import lenet

    rows = lenet().summary()
    assert [r[2] for r in rows if r[2]] == [520, 1_440_500, 5_010]
    assert sum(r[2] for r in rows) == 1_446_030
    assert rows[0][1] == (20, 24, 24) and rows[2][1] == (2880,)


def test_wp12_lenet_layer_by_layer_backward_is_proved():
    d = derive("lenet")
    assert d.verify()
    assert set(d.extra["deltas"]) == {"z", "a", "h", "f", "pool", "conv"}


# -- worked problem 13: numerical gradient checking ---------------------------------------
def test_wp13_central_differences_catch_a_planted_mistake():
    f = lambda x1, x2, x3: x1 * x2 * x3
    x = dict(x1=np.array(2.0), x2=np.array(-3.0), x3=np.array(0.5))
    good = dict(x1=x["x2"] * x["x3"], x2=x["x1"] * x["x3"], x3=x["x1"] * x["x2"])
    rep = derivgrad.gradcheck(f, x, good)
    assert rep.max_abs_error < 1e-8
    bad = dict(good, x2=x["x1"] * x["x1"])  # a planted mistake
    with pytest.raises(derivgrad.GradcheckError, match=r"x2\[\(\)\]"):
        derivgrad.gradcheck(f, x, bad)


# -- every op: verify, Jacobian layout, lambdify against the kernels ----------------------
@pytest.mark.parametrize("name", [n for n in OPS if n != "lenet"])
def test_every_op_verifies_and_its_kernels_match_the_ground_truth(name):
    op = OPS[name]
    d = op.build()
    assert d.verify()
    for k, v in d.inputs.items():
        assert d.jacobian(k).shape == tuple(v.shape) + tuple(d.output.shape)
    rng = np.random.default_rng(11)
    for _ in range(3):
        vals = {k: rng.standard_normal(v.shape) for k, v in d.input_arrays.items()}
        up = rng.standard_normal(d.upstream_array.shape)
        extra = {"upstream": up} if "upstream" in d.lambdify().argnames else {}
        if not extra:
            up = np.ones(d.upstream_array.shape)
        y, grads = op.kernel(d, vals, up)
        assert np.allclose(d.lambdify()(**vals, **extra), y, rtol=1e-10, atol=1e-12)
        for k, g in grads.items():
            assert np.allclose(d.lambdify(k)(**vals, **extra), g, rtol=1e-10, atol=1e-12), k


def test_lenet_kernels_match_the_ground_truth():
    op = OPS["lenet"]
    d = op.build()
    rng = np.random.default_rng(12)
    vals = {k: rng.standard_normal(v.shape) for k, v in d.input_arrays.items()}
    y, grads = op.kernel(d, vals, np.ones(1))
    assert np.allclose(d.lambdify()(**vals), y)
    for k, g in grads.items():
        assert np.allclose(d.lambdify(k)(**vals), g, rtol=1e-10, atol=1e-12), k


@pytest.mark.parametrize(
    "op,params,words",
    [
        ("conv2d", dict(input=(3, 3), kernel=(5, 5)), ["does not fit"]),
        ("conv2d", dict(stride=0), ["stride"]),
        ("conv2d", dict(padding=-1), ["padding"]),
        ("conv2d", dict(kernal=3), ["unknown parameter", "kernal"]),
        ("nosuchop", {}, ["unknown op", "nosuchop"]),
        ("softmax_cross_entropy", dict(classes=3, label=4), ["label"]),
        ("maxpool2d", dict(kernel=2, padding=2), ["padding"]),
    ],
)
def test_bad_parameters_are_refused(op, params, words):
    with pytest.raises(ParamError) as e:
        derive(op, **params)
    assert all(w in str(e.value) for w in words)


@pytest.mark.parametrize(
    "op,params,name,tamper",
    [
        (
            "conv2d",
            dict(input=(3, 3), kernel=(2, 2)),
            "x",
            lambda d, g: g.__setitem__(
                (0, 0), g[0, 0] + d.upstream_array[0, 0] * d.input_arrays["w"][1, 1]
            ),
        ),  # extra term
        ("logistic_regression", {}, "b", lambda d, g: g.__setitem__(0, g[0] + 2)),  # p + e_y
        (
            "batchnorm2d",
            {},
            "x",
            lambda d, g: g.__setitem__(
                (0, 0, 0, 0), g[0, 0, 0, 0] + d.upstream_array[0, 0, 0, 0] / 1000
            ),
        ),  # a stray term
        (
            "lenet",
            {},
            "W1",
            lambda d, g: g.__setitem__(
                (0, 0), g[0, 0].xreplace({a: 1 for a in g[0, 0].atoms(Step)})
            ),
        ),  # ReLU kink dropped
    ],
)
def test_verify_fails_on_a_wrong_closed_form(op, params, name, tamper):
    """The proof methods must be able to fail: a tampered closed form is refused."""
    d = derive(op, **params)
    g = d.grad_array(name).copy()
    tamper(d, g)
    d._cache[("grad", name)] = g
    with pytest.raises(AssertionError, match=name):
        d.verify([name])
