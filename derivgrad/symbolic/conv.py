r"""Symbolic convolution (worked problems 5-9).

Forward (cross-correlation, channels c, filters o, batch n):

.. math:: y_{n,o,i,j} = b_o + \sum_{c,h,l} w_{o,c,h,l}\, x^{pad}_{n,c,\,i s + h d,\,j s + l d}

Compact rules, derived once here and proved against the chain rule by ``verify()``:

* ``dX``: dilate dY by the stride (s-1 zeros between entries), pad it by ``d(k-1)`` on
  every side, correlate it with ``rot180`` of the dilated filter, summing over filters; pad
  with zeros the rows and columns that no window reached (when ``(n + 2p - d(k-1) - 1)`` is
  not a multiple of s) and crop the padding p.  For s = d = 1, p = 0 it is the course's
  ``dX = pad(dY, f-1) ⋆ rot180(W)``: the padding ``f - 1`` follows from
  ``h_in = h'_out - f + 1`` with ``h'_out = h_out + 2p'``.
* ``dW = X_pad ⋆ dY``: correlate the padded input with dY as the filter, with stride and
  dilation swapped (stride d, dilation s), summed over the batch, cropped to the filter.
* ``db = Σ dY`` over batch and positions.
"""

import numpy as np
import sympy as sp

from derivgrad.kernels import output_size
from derivgrad.kernels._geometry import window_span

from .derivation import Derivation
from .params import ParamError, check_unknown, count, pair
from .tensors import correlate, dilate, flip, pad, symbols, zeros

PARAMS = (
    "input",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "channels",
    "filters",
    "batch",
    "bias",
)


def _squeeze(shape, keep):
    return tuple(n for n, k in zip(shape, keep) if k)


def conv_nd(op, params, ndim):
    check_unknown(op, params, PARAMS)
    default_in = (3, 3) if ndim == 2 else (4,)
    default_k = (2, 2) if ndim == 2 else (3,)
    if ndim == 2:
        size = pair(op, "input", params.get("input", default_in), 1)
        ks = pair(op, "kernel", params.get("kernel", default_k), 1)
        s = pair(op, "stride", params.get("stride", 1), 1)
        p = pair(op, "padding", params.get("padding", 0), 0)
        d = pair(op, "dilation", params.get("dilation", 1), 1)
    else:
        one = lambda name, dflt, lo: (count(op, name, _scalar(params.get(name, dflt)), lo),)
        size, ks = one("input", 4, 1), one("kernel", 3, 1)
        s, p, d = one("stride", 1, 1), one("padding", 0, 0), one("dilation", 1, 1)
    C = count(op, "channels", params.get("channels", 1))
    O = count(op, "filters", params.get("filters", 1))
    N = count(op, "batch", params.get("batch", 1))
    bias = params.get("bias", True)
    if isinstance(bias, str):
        bias = bias.lower() not in ("0", "false", "no")
    outs = tuple(output_size(n, k, st, pp, dd) for n, k, st, pp, dd in zip(size, ks, s, p, d))
    if min(outs) < 1:
        raise ParamError(
            f"{op}: a {'x'.join(map(str, ks))} kernel (dilation {d}) does not fit a "
            f"{'x'.join(map(str, size))} input with padding {p}; output size would be {outs}"
        )
    if C * O * N * np.prod(size) * np.prod(ks) > 20000:
        raise ParamError(
            f"{op}: too large for a symbolic derivation "
            "(batch*channels*filters*input*kernel = "
            f"{C * O * N * np.prod(size) * np.prod(ks)} > 20000)"
        )
    # symbol tensors: singleton batch/channel/filter axes are left out, as the notes do
    xs = symbols("x", _squeeze((N, C) + size, (N > 1, C > 1) + (True,) * ndim))
    ws = symbols("w", _squeeze((O, C) + ks, (O > 1, C > 1) + (True,) * ndim))
    bs = symbols("b", (O,)) if bias else None
    x = xs.reshape((N, C) + size)
    w = ws.reshape((O, C) + ks)
    pads = [(q, q) for q in p]
    y = np.stack([correlate(pad(x[n], pads), w, s, d) for n in range(N)])
    if bias:
        for o in range(O):
            y[:, o] = y[:, o] + bs[o]
    y_shape = _squeeze((N, O) + outs, (N > 1, O > 1) + (True,) * ndim)
    ds = symbols("d", y_shape, latex=r"\delta")
    dy = ds.reshape((N, O) + outs)

    dX = lambda: rule_dx(dy, w, size, ks, s, p, d).reshape(xs.shape)
    dW = lambda: rule_dw(x, dy, ks, s, p, d).reshape(ws.shape)
    db = lambda: rule_db(dy)

    inputs = {"x": xs, "w": ws}
    closed = {"x": dX, "w": dW}
    if bias:
        inputs["b"] = bs
        closed["b"] = db
    rules = {
        "x": "dX = crop_p(pad(dilate_s(dY), d(f-1)) ⋆ rot180(dilate_d(W))), summed over filters",
        "w": "dW = pad_p(X) ⋆ dY, with stride d and dilation s, summed over the batch",
        "b": "db = Σ dY, summed over batch and positions",
    }
    params_out = dict(
        input=size,
        kernel=ks,
        stride=s,
        padding=p,
        dilation=d,
        channels=C,
        filters=O,
        batch=N,
        bias=bias,
    )
    der = Derivation(
        op,
        params_out,
        inputs,
        y.reshape(y_shape),
        ds,
        closed,
        rules,
        proof="expand",
        extra=dict(x_full=x, w_full=w, out_size=outs),
    )
    der.conv_matrix = lambda: conv_matrix(der)
    return der


def full_upstream(dy, ks, s, d):
    """The first step of the dX rule: δ dilated by the stride, padded by ``span - 1`` on every
    side of each spatial axis (the last ``len(ks)`` axes)."""
    return pad(dilate(dy, s), [(window_span(k, dd) - 1,) * 2 for k, dd in zip(ks, d)])


def rotated_filter(w, d):
    """rot180 of the filter dilated by d (flip of its last ``len(d)`` axes)."""
    return flip(dilate(w, d), tuple(range(w.ndim - len(d), w.ndim)))


def rule_dx(dy, w, size, ks, s, p, d):
    """``dX (N, C, *size)`` from ``dy (N, O, *out)`` and ``w (O, C, *ks)``: dilate dY by s, pad
    it by d(k-1), correlate with rot180 of the dilated filter (summing over filters), pad
    the rows no window reached, crop the padding p."""
    ndim = len(size)
    # padded rows/columns past the last window: n + 2p - ((out - 1) s + span)
    rest = [
        n + 2 * pp - ((output_size(n, k, st, pp, dd) - 1) * st + window_span(k, dd))
        for n, pp, dd, k, st in zip(size, p, d, ks, s)
    ]
    wf = rotated_filter(w, d).transpose((1, 0) + tuple(range(2, 2 + ndim)))
    out = []
    for n in range(dy.shape[0]):
        full = full_upstream(dy[n], ks, s, d)
        g = pad(correlate(full, wf, (1,) * ndim, (1,) * ndim), [(0, r) for r in rest])
        out.append(g[(slice(None),) + tuple(slice(pp, pp + m) for pp, m in zip(p, size))])
    return np.stack(out)


def rule_dw(x, dy, ks, s, p, d):
    """``dW (O, C, *ks) = Σ_n pad_p(X_n) ⋆ dY_n`` with stride d and dilation s, cropped."""
    O, C = dy.shape[1], x.shape[1]
    g = zeros((O, C) + tuple(ks))
    for n in range(x.shape[0]):
        xp = pad(x[n], [(q, q) for q in p])
        for o in range(O):
            for c in range(C):
                full = correlate(xp[c][None], dy[n, o][None, None], d, s)[0]
                g[o, c] = g[o, c] + full[tuple(slice(0, k) for k in ks)]
    return g


def rule_db(dy):
    """``db[o] = Σ_{n, positions} dY[n, o]``."""
    return np.array([sp.Add(*dy[:, o].reshape(-1)) for o in range(dy.shape[1])], dtype=object)


def _scalar(v):
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ParamError(f"conv1d: expected a single number, got {v!r}")
        return v[0]
    return v


def conv2d(**params):
    return conv_nd("conv2d", params, 2)


def conv1d(**params):
    return conv_nd("conv1d", params, 1)


def conv_matrix(der):
    r"""The matrix ``M`` of the linear map ``vec(x_pad) ↦ vec(x_pad ⋆ w)`` (bias left out),
    rows ``(n, o, i...)`` of the output, columns ``(n, c, i...)`` of the *padded* input,
    row-major.  For worked problem 5 (x ∈ R⁴ padded by 1 to R⁶, w ∈ R³) it is the 4×6
    banded Toeplitz matrix with rows ``[w1 w2 w3 0 0 0]`` shifted by one.

    Built by correlating a tensor of fresh symbols for the padded input and reading off the
    coefficients; ``conv_matrix_proves_input_gradient`` shows ``Mᵀ δ`` cropped is dX.
    """
    x = der.extra["x_full"]
    w = der.extra["w_full"]
    p = der.params["padding"]
    s, d = der.params["stride"], der.params["dilation"]
    N = x.shape[0]
    xp_shape = x.shape[:2] + tuple(n + 2 * q for n, q in zip(x.shape[2:], p))
    u = symbols("u", xp_shape)
    y = np.stack([correlate(u[n], w, s, d) for n in range(N)])
    cols = list(u.reshape(-1))
    rows = list(y.reshape(-1))
    return sp.Matrix(len(rows), len(cols), lambda i, j: rows[i].coeff(cols[j]))


def conv_matrix_proves_input_gradient(der):
    """``crop_p(Mᵀ vec(δ)) == chain rule dX`` entry by entry (expand to 0); returns True."""
    M = conv_matrix(der)
    delta = sp.Matrix(list(der._upstream.reshape(-1)))
    g = M.T * delta
    x = der.extra["x_full"]
    p = der.params["padding"]
    xp_shape = x.shape[:2] + tuple(n + 2 * q for n, q in zip(x.shape[2:], p))
    g = np.array(list(g), dtype=object).reshape(xp_shape)
    g = g[(slice(None), slice(None)) + tuple(slice(q, q + n) for q, n in zip(p, x.shape[2:]))]
    chain = der.chain_array("x").reshape(g.shape)
    for a, b in zip(g.reshape(-1), chain.reshape(-1)):
        if sp.expand(a - b) != 0:
            raise AssertionError(f"{der.op}: Mᵀδ entry {a} != chain rule {b}")
    return True
