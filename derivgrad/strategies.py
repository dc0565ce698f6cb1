"""Hypothesis strategies for derivgrad's ops: valid parameters small enough for SymPy, and
input values that keep piecewise ops away from their kinks.

    from derivgrad.strategies import op_params, op_values
    @given(st.data())
    def test_my_kernel(data):
        params = data.draw(op_params("conv2d"))
        ...

Strategies draw the hyper-parameters first and then sizes that fit them, so every draw
is a valid op; batch, channels and filters are drawn independently so that they differ in
most cases (a reduction over the wrong axis passes when they are equal).
"""

import numpy as np
from hypothesis import strategies as st


@st.composite
def _conv2d(draw, ndim=2):
    k = [draw(st.integers(1, 3)) for _ in range(ndim)]
    s = [draw(st.integers(1, 2)) for _ in range(ndim)]
    p = [draw(st.integers(0, 2)) for _ in range(ndim)]
    d = [draw(st.integers(1, 2)) for _ in range(ndim)]
    size = [draw(st.integers(max(1, dd * (kk - 1) + 1 - 2 * pp), 5)) for kk, pp, dd in zip(k, p, d)]
    out = dict(
        channels=draw(st.integers(1, 2)),
        filters=draw(st.integers(1, 2)),
        batch=draw(st.integers(1, 2)),
        bias=draw(st.booleans()),
    )
    if ndim == 2:
        out.update(
            input=tuple(size), kernel=tuple(k), stride=tuple(s), padding=tuple(p), dilation=tuple(d)
        )
    else:
        out.update(input=size[0], kernel=k[0], stride=s[0], padding=p[0], dilation=d[0])
    return out


@st.composite
def _pool(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, k[0])), draw(st.integers(1, k[1])))  # overlapping windows too
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    size = (
        draw(st.integers(max(1, k[0] - 2 * p[0]), 5)),
        draw(st.integers(max(1, k[1] - 2 * p[1]), 5)),
    )
    return dict(input=size, kernel=k, stride=s, padding=p, channels=draw(st.integers(1, 2)))


@st.composite
def _classes_label(draw, **extra):
    k = draw(st.integers(2, 4))
    out = dict(classes=k, label=draw(st.integers(1, k)))
    out.update({name: draw(s) for name, s in extra.items()})
    return out


@st.composite
def _batchnorm(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if n * h * w < 2:
        n = 2
    return dict(batch=n, channels=c, input=(h, w))


PARAMS = {
    "conv2d": _conv2d(2),
    "conv1d": _conv2d(1),
    "maxpool2d": _pool(),
    "avgpool2d": _pool(),
    "linear": st.fixed_dictionaries(
        dict(
            features=st.integers(1, 4),
            outputs=st.integers(1, 3),
            batch=st.integers(1, 3),
            bias=st.booleans(),
        )
    ),
    "relu": st.fixed_dictionaries(dict(features=st.integers(1, 5))),
    "softmax": st.fixed_dictionaries(dict(classes=st.integers(2, 5))),
    "softmax_cross_entropy": _classes_label(),
    "logistic_regression": _classes_label(features=st.integers(1, 3)),
    "batchnorm2d": _batchnorm(),
    "residual": st.fixed_dictionaries(dict(features=st.integers(1, 3), hidden=st.integers(1, 3))),
    "flatten": st.fixed_dictionaries(
        dict(input=st.tuples(st.integers(1, 3), st.integers(1, 3)), channels=st.integers(1, 2))
    ),
    "lenet": st.just({}),
}


def op_params(name):
    """Parameters for ``derivgrad.derive(name, **params)``; every draw is a valid op."""
    return PARAMS[name]


@st.composite
def op_values(draw, derivation):
    """Arrays for the derivation's inputs and upstream gradient, seeded by hypothesis.

    Max pooling gets a permutation of well-separated values (no ties, and a step of 1e-5
    cannot change a window's winner); ReLU inputs keep |z| >= 0.1; everything else is
    standard normal.  Returns ``(values, upstream)``.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    vals = {}
    for k, sym in derivation._inputs.items():
        if derivation.op == "maxpool2d":
            vals[k] = (rng.permutation(sym.size) / sym.size - 0.5).reshape(sym.shape)
        elif derivation.op == "relu":
            vals[k] = rng.choice([-1.0, 1.0], sym.shape) * rng.uniform(0.1, 2.0, sym.shape)
        else:
            vals[k] = rng.standard_normal(sym.shape)
    up = rng.standard_normal(derivation._upstream.shape)
    return vals, up
