"""``derivgrad.define``: layers written in index notation, checked three ways — the symbolic
proof on an example instance, central differences on the generated kernels, and an independent
NumPy forward written here (loops or ``einsum``, never the generated code)."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import assert_close

import derivgrad
from derivgrad import gradcheck
from derivgrad.notation import op as op_module

DEPTHWISE = "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]"
LAYERNORM = """
    mu[n]   += x[n, d] / len(d)
    var[n]  += (x[n, d] - mu[n])**2 / len(d)
    y[n, d]  = g[d] * (x[n, d] - mu[n]) / sqrt(var[n] + 1e-5) + b[d]
"""
GELU = "y[n, d] = 0.5 * x[n, d] * (1 + tanh(0.7978845608 * (x[n, d] + 0.044715 * x[n, d]**3)))"
ATTENTION = """
    s[i, j] += q[i, d] * k[j, d] / sqrt(len(d))
    e[i, j]  = exp(s[i, j])
    z[i]    += e[i, j]
    y[i, d] += e[i, j] / z[i] * v[j, d]
"""
CAUSAL = "y[n, i] += x[n, i - u] * w[u]"
DILATED = "y[n, o, i] += x[n, c, i + 2*u] * w[o, c, u]"
RMSNORM = """
    ms[n]   += x[n, d]**2 / len(d)
    y[n, d]  = g[d] * x[n, d] / sqrt(ms[n] + 1e-6)
"""
SILU = "y[n, d] = x[n, d] * sigmoid(x[n, d])"
BILINEAR = "y[n, o] += a[n, i] * W[o, i, j] * b[n, j]"
MAXPOOL = (
    "y[n, c, i, j] = max(max(x[n, c, 2*i, 2*j], x[n, c, 2*i, 2*j + 1]), "
    "max(x[n, c, 2*i + 1, 2*j], x[n, c, 2*i + 1, 2*j + 1]))"
)


# -- independent NumPy forwards ------------------------------------------------------------
def ref_depthwise(x, w):
    N, C, H, W = x.shape
    K = w.shape[1]
    Ho, Wo = (H - K) // 2 + 1, (W - K) // 2 + 1
    y = np.zeros((N, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            y[:, :, i, j] = (x[:, :, 2 * i : 2 * i + K, 2 * j : 2 * j + K] * w).sum(axis=(2, 3))
    return y


def ref_layernorm(x, g, b):
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    return g * (x - mu) / np.sqrt(var + 1e-5) + b


def ref_gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


def ref_attention(q, k, v):
    s = q @ k.T / np.sqrt(q.shape[1])
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    return p @ v


def ref_causal(x, w):
    # output entry t (0-based) is the window ending at x[t + K - 1], weights reversed in time
    K = len(w)
    return np.stack(
        [(x[:, t : t + K] * w[::-1]).sum(axis=1) for t in range(x.shape[1] - K + 1)], axis=1
    )


def ref_dilated(x, w):
    K = w.shape[2]
    L = x.shape[2] - 2 * (K - 1)
    return np.einsum(
        "ncki,ock->noi", np.stack([x[:, :, 2 * u : 2 * u + L] for u in range(K)], 2), w
    )


def ref_rmsnorm(x, g):
    return g * x / np.sqrt((x**2).mean(axis=1, keepdims=True) + 1e-6)


def ref_silu(x):
    return x / (1 + np.exp(-x))


def ref_bilinear(a, W, b):
    return np.einsum("ni,oij,nj->no", a, W, b)


def ref_maxpool(x):
    N, C, H, W = x.shape
    return x[:, :, : H // 2 * 2, : W // 2 * 2].reshape(N, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))


CASES = {
    "depthwise": (DEPTHWISE, dict(x=(2, 3, 7, 7), w=(3, 3, 3)), ref_depthwise),
    "layernorm": (LAYERNORM, dict(x=(4, 6), g=(6,), b=(6,)), ref_layernorm),
    "gelu": (GELU, dict(x=(3, 5)), ref_gelu),
    "attention": (ATTENTION, dict(q=(3, 4), k=(5, 4), v=(5, 4)), ref_attention),
    "causal_conv1d": (CAUSAL, dict(x=(2, 9), w=(3,)), ref_causal),
    "dilated_conv1d": (DILATED, dict(x=(2, 3, 11), w=(4, 3, 3)), ref_dilated),
    "rmsnorm": (RMSNORM, dict(x=(3, 5), g=(5,)), ref_rmsnorm),
    "silu": (SILU, dict(x=(3, 4)), ref_silu),
    "bilinear": (BILINEAR, dict(a=(2, 3), W=(4, 3, 5), b=(2, 5)), ref_bilinear),
    "maxpool": (MAXPOOL, dict(x=(2, 2, 5, 6)), ref_maxpool),
}

# smaller shapes for the symbolic proof where the example's takes seconds
PROOF_SHAPES = {
    "layernorm": dict(x=(2, 3), g=(3,), b=(3,)),
    "attention": dict(q=(2, 3), k=(3, 3), v=(3, 3)),
}


@pytest.fixture(scope="module")
def ops():
    return {k: derivgrad.define(spec, name=f"t_{k}", **sh) for k, (spec, sh, _) in CASES.items()}


def _values(shapes, rng):
    return {k: rng.standard_normal(s) for k, s in shapes.items()}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_matches_an_independent_numpy_reference(ops, case, dtype):
    _, shapes, ref = CASES[case]
    rng = np.random.default_rng(1)
    vals = _values(shapes, rng)
    y = ops[case].forward(**{k: v.astype(dtype) for k, v in vals.items()})
    # float32 inputs rounded once: compare with the reference on the rounded inputs
    expect = ref(**{k: v.astype(dtype).astype(np.float64) for k, v in vals.items()})
    assert_close(y, expect, dtype, f"{case} forward")


@pytest.mark.parametrize("case", list(CASES))
def test_backward_passes_central_differences(ops, case):
    _, shapes, _ = CASES[case]
    rng = np.random.default_rng(2)
    vals = _values(shapes, rng)
    op = ops[case]
    y = op.forward(**vals)
    up = rng.standard_normal(y.shape)
    grads = op.backward(up, **vals)
    assert set(grads) == set(shapes)
    gradcheck(lambda **v: op.forward(**v), vals, grads, upstream=up, mode="fast", projections=6)


@pytest.mark.parametrize("case", ["layernorm", "attention", "rmsnorm", "gelu"])
def test_vjp_pullback_reuses_the_forward_and_passes_central_differences(ops, case):
    _, shapes, ref = CASES[case]
    rng = np.random.default_rng(6)
    vals = _values(shapes, rng)
    op = ops[case]
    y, pullback = op.vjp(**vals)
    assert_close(y, ref(**vals), np.float64, f"{case} vjp forward")
    up = rng.standard_normal(y.shape)
    grads = pullback(up)
    assert set(grads) == set(shapes)
    gradcheck(lambda **v: op.forward(**v), vals, grads, upstream=up, mode="fast", projections=6)
    # called again, with another upstream: the saved forward is unchanged by the first call
    up2 = rng.standard_normal(y.shape)
    again = pullback(up2)
    gradcheck(lambda **v: op.forward(**v), vals, again, upstream=up2, mode="fast", projections=3)
    with pytest.raises(derivgrad.ParamError, match="dy must have the output's shape"):
        pullback(up[..., :1])
    with pytest.raises(TypeError, match="dy is float32"):
        pullback(up.astype(np.float32))


@pytest.mark.parametrize("case", list(CASES))
def test_closed_form_is_proved_and_the_kernels_agree_with_it(ops, case):
    spec, shapes, _ = CASES[case]
    op = ops[case]
    shapes = PROOF_SHAPES.get(case, shapes)
    d = op.derive(**shapes)
    assert d.verify()
    rng = np.random.default_rng(3)
    vals = _values(shapes, rng)
    y = op.forward(**vals)
    up = rng.standard_normal(y.shape)
    assert_close(y, d.lambdify()(**vals, upstream=up), np.float64, f"{case} forward")
    grads = op.backward(up, **vals)
    for k, g in grads.items():
        assert_close(g, d.lambdify(k)(**vals, upstream=up), np.float64, f"{case} d{k}")


def test_max_pooling_routes_ties_to_the_first_maximum_as_the_builtin(ops):
    from derivgrad import kernels as K

    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, size=(2, 2, 6, 6)).astype(np.float64)  # many ties
    dy = rng.standard_normal((2, 2, 3, 3))
    got = ops["maxpool"].backward(dy, x=x)["x"]
    y, idx = K.maxpool2d_forward(x, 2)
    np.testing.assert_array_equal(ops["maxpool"].forward(x=x), y)
    np.testing.assert_array_equal(got, K.maxpool2d_backward(dy, idx, x.shape))


MAXPOOL3 = (
    "y[n, c, i, j] = max(max(max(x[n, c, 2*i, 2*j], x[n, c, 2*i, 2*j + 1]), "
    "max(x[n, c, 2*i, 2*j + 2], x[n, c, 2*i + 1, 2*j])), "
    "max(max(max(x[n, c, 2*i + 1, 2*j + 1], x[n, c, 2*i + 1, 2*j + 2]), "
    "max(x[n, c, 2*i + 2, 2*j], x[n, c, 2*i + 2, 2*j + 1])), x[n, c, 2*i + 2, 2*j + 2]))"
)


def ref_maxpool3_grad(x, dy):
    # overlapping 3x3 windows, stride 2: each window's upstream entry goes to its largest
    # entry (the values are drawn continuous: no ties), summed where windows overlap
    dx = np.zeros_like(x)
    for n, c, i, j in np.ndindex(*dy.shape):
        win = x[n, c, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
        u, v = np.unravel_index(np.argmax(win), (3, 3))
        dx[n, c, 2 * i + u, 2 * j + v] += dy[n, c, i, j]
    return dx


def test_a_window_read_many_times_is_differentiated_in_one_scatter_pass():
    # the nine reads of x in one elementwise statement: one loop nest over the outputs adds
    # every read's part (overlapping windows: neighbouring outputs add to one entry), the
    # parallel loop over n owning its slice of dx
    op = derivgrad.define(MAXPOOL3, x=(2, 2, 7, 7), name="t_maxpool3")
    back = op.source()[op.source().index("def _backward") :]
    assert back.count("d_x[np.uint64(v_n), np.uint64(v_c), np.uint64(2*v_i") == 9  # one nest
    rng = np.random.default_rng(8)
    for shape in [(2, 2, 7, 7), (3, 5, 9, 12), (1, 1, 3, 3)]:
        x = rng.standard_normal(shape)
        for dtype in (np.float64, np.float32):
            xd = x.astype(dtype)
            y = op.forward(x=xd)
            dy = rng.standard_normal(y.shape).astype(dtype)
            got = op.backward(dy, x=xd)["x"]
            want = ref_maxpool3_grad(xd.astype(np.float64), dy.astype(np.float64))
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_kernels_run_on_sizes_other_than_the_example(ops):
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((3, 2, 12, 9)), rng.standard_normal((2, 4, 4))
    op = ops["depthwise"]
    assert_close(op.forward(x=x, w=w), ref_depthwise(x, w), np.float64, "depthwise 12x9")
    up = rng.standard_normal((3, 2, 5, 3))
    gradcheck(
        lambda **v: op.forward(**v),
        {"x": x, "w": w},
        op.backward(up, x=x, w=w),
        upstream=up,
        mode="fast",
    )


def test_general_size_rule_is_in_index_notation_with_its_conditions(ops):
    from derivgrad.documents.render import render

    d = ops["depthwise"].derive()
    tex = render(d, "latex")
    # dx gathers δ over the outputs whose window covers the entry, printed 1-based as the
    # document's indices are: 0-based u = p - 2i is, with p, i, u counted from 1,
    # u - 1 = (p - 1) - 2 (i - 1), so u = p - 2 i + 2
    assert r"\frac{\partial L}{\partial x_{n,c,p,q}}" in tex
    assert r"{\delta}_{n,c,i,j} {w}_{c,- 2 i + p + 2,- 2 j + q + 2}" in tex
    assert r"[1 \le - 2 i + p + 2 \le N_{u}]" in tex
    # the output's rows end 2 i + u <= n^x_3 - 1 (0-based): i runs from 1 to
    # floor((n^x_3 - N_u) / 2) + 1
    floor = r"\left\lfloor{- \frac{N_{u}}{2} + \frac{n^{x}_{3}}{2}}\right\rfloor"
    assert r"i \in \{1, \dots, " + floor + r" + 1\}" in tex
    # a causal read: i counts from N_u, and the output is stored from 1 at i - N_u + 1
    causal = derivgrad.define("y[n, i] += x[n, i - u] * w[u]", x=(1, 5), w=(2,)).derive()
    tex = render(causal, "latex")
    assert r"i \in \{N_{u}, \dots, n^{x}_{2}\}" in tex
    assert r"{\delta}_{n,- N_{u} + p + u} {w}_{u}" in tex
    assert r"[N_{u} \le p + u - 1 \le n^{x}_{2}]" in tex


def test_definition_is_registered_and_reachable_by_name(ops):
    from derivgrad.registry import get

    assert get("t_depthwise") is ops["depthwise"]
    assert derivgrad.derive("t_gelu").verify()


def test_a_definition_before_the_registry_is_registered_when_it_is_imported():
    import subprocess
    import sys
    from pathlib import Path

    # a fresh process: define() alone does not load the built-in ops (start-up time), and the
    # op is in the registry once something imports it
    code = (
        "import sys\n"
        "from derivgrad.notation import define\n"
        "op = define('y[i] = x[i] * 3', x=(2,))\n"
        "assert 'derivgrad.registry' not in sys.modules\n"
        "import derivgrad\n"
        "assert derivgrad.OPS[op.name] is op and derivgrad.derive(op.name).verify()\n"
        "try:\n"
        "    define('y[i] = x[i]', x=(2,), name='conv2d')\n"
        "except ValueError as e:\n"
        "    assert 'built-in' in str(e)\n"
        "else:\n"
        "    raise AssertionError('a built-in name was taken')\n"
    )
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=None
    )
    assert r.returncode == 0, r.stderr


def test_generated_module_is_cached_on_disk_by_the_definitions_hash(ops, tmp_path, monkeypatch):
    from derivgrad.notation import cache_dir

    monkeypatch.setenv("DERIVGRAD_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    op = derivgrad.define(SILU + " * 1", name="t_silu_cached", x=(2, 3))
    op.forward(x=np.ones((2, 3)))
    files = list(tmp_path.glob("dg_*.py"))
    assert [f.name for f in files] == [f"dg_{op.key}.py"]
    assert files[0].read_text() == op_module._sealed(op.source())  # whole, and sealed
    again = derivgrad.define(SILU + " * 1", name="t_silu_cached2", x=(2, 3))
    assert again.key == op.key  # same definition, same file: loaded, not regenerated


def test_inputs_are_validated_before_compiled_code(ops):
    op = ops["depthwise"]
    x, w = np.ones((2, 3, 7, 7)), np.ones((3, 3, 3))
    with pytest.raises(ValueError, match="w must have 3 axes"):
        op.forward(x=x, w=np.ones((3, 3)))
    with pytest.raises(ValueError, match="missing w"):
        op.forward(x=x)
    with pytest.raises(TypeError, match="float32 or float64"):
        op.forward(x=x.astype(int), w=w)
    with pytest.raises(TypeError, match="float32"):
        op.forward(x=x.astype(np.float32), w=w)
    with pytest.raises(ValueError, match=r"statement 1 .*sizes must agree"):
        op.forward(x=x, w=np.ones((4, 3, 3)))
    with pytest.raises(ValueError, match="dy must have the output's shape"):
        op.backward(np.ones((2, 3, 2, 2)), x=x, w=w)
