"""Compiled elementwise and row-wise kernels (memory-bound: plain loops, parallel over
blocks or rows, each iteration owning its outputs)."""

import math

from numba import prange

from ._config import parallel, serial

_BLOCK = 16384


@parallel
def relu_fwd(x, y):
    n = x.size
    z = x.dtype.type(0)
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        # each block as slices indexed from 0, and a zero of the arrays' own type: the loop
        # then vectorises (indices from b * _BLOCK keep Numba's negative-index check, and an
        # int 0 makes the select float64): 10x faster on 64x16x28x28 float32, same values
        lo = b * _BLOCK
        m = min(n, lo + _BLOCK) - lo
        xs, ys = x[lo : lo + m], y[lo : lo + m]
        for i in range(m):
            v = xs[i]
            # `not (v <= 0)` keeps NaN: relu(NaN) = NaN, as in PyTorch.
            ys[i] = v if not (v <= z) else z


@parallel
def relu_bwd(dy, x, dx):
    n = x.size
    z = x.dtype.type(0)
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK  # slices from 0: see relu_fwd
        m = min(n, lo + _BLOCK) - lo
        xs, ds, os = x[lo : lo + m], dy[lo : lo + m], dx[lo : lo + m]
        for i in range(m):
            os[i] = ds[i] if xs[i] > z else z


@serial
def _softmax_row(z, p):
    """``p = softmax(z)`` for one row, max subtracted first; returns (max, sum of exps)."""
    K = z.shape[0]
    m = z[0]
    for j in range(1, K):
        if z[j] > m:
            m = z[j]
    s = 0.0
    for j in range(K):
        e = math.exp(z[j] - m)
        p[j] = e
        s += e
    inv = 1.0 / s
    for j in range(K):
        p[j] *= inv
    return m, s


@parallel
def softmax_rows(z, p):
    for r in prange(z.shape[0]):
        _softmax_row(z[r], p[r])


@parallel
def softmax_xent_rows(z, labels, p, losses):
    """Row r: ``p = softmax(z_r)`` and ``losses[r] = logsumexp(z_r) - z_r[y_r]`` (stable)."""
    for r in prange(z.shape[0]):
        m, s = _softmax_row(z[r], p[r])
        losses[r] = math.log(s) + m - z[r, labels[r]]


@parallel
def softmax_xent_grad(p, labels, scale, dz):
    R, K = p.shape
    for r in prange(R):
        for j in range(K):
            dz[r, j] = p[r, j] * scale
        y = labels[r]
        # (p - 1) * scale in one rounding: p*scale - scale would leave ~1e-8 in float32
        dz[r, y] = (p[r, y] - 1.0) * scale
