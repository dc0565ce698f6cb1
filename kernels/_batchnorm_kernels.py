"""Compiled batch-norm kernels: per-channel statistics (one channel per parallel
iteration, float64 accumulators), then an elementwise pass parallel over (n, c) planes."""

import numpy as np
from numba import prange

from ._config import parallel


@parallel
def channel_moments(x):
    """Per-channel mean and biased variance of ``x (N, C, HW)`` (two-pass, float64)."""
    N, C, HW = x.shape
    mean = np.empty(C, dtype=np.float64)
    var = np.empty(C, dtype=np.float64)
    m = N * HW
    for c in prange(C):
        s = 0.0
        for n in range(N):
            for i in range(HW):
                s += x[n, c, i]
        mu = s / m
        q = 0.0
        for n in range(N):
            for i in range(HW):
                d = x[n, c, i] - mu
                q += d * d
        mean[c] = mu
        var[c] = q / m
    return mean, var


@parallel
def normalize(x, mean, invstd, gamma, beta, xhat, y):
    N, C, HW = x.shape
    for t in prange(N * C):
        n = t // C
        c = t % C
        mu = mean[c]
        s = invstd[c]
        g = gamma[c]
        b = beta[c]
        for i in range(HW):
            h = (x[n, c, i] - mu) * s
            xhat[n, c, i] = h
            y[n, c, i] = g * h + b


@parallel
def grad_sums(dy, xhat):
    """Per channel: ``Σ dy`` and ``Σ dy ⊙ xhat`` (float64)."""
    N, C, HW = dy.shape
    sdy = np.empty(C, dtype=np.float64)
    sdyx = np.empty(C, dtype=np.float64)
    for c in prange(C):
        a = 0.0
        b = 0.0
        for n in range(N):
            for i in range(HW):
                g = dy[n, c, i]
                a += g
                b += g * xhat[n, c, i]
        sdy[c] = a
        sdyx[c] = b
    return sdy, sdyx


@parallel
def input_grad(dy, xhat, gamma, invstd, sdy, sdyx, training, dx):
    r"""Training: ``dx = γ σ⁻¹ (dy - mean(dy) - x̂ mean(dy x̂))``; evaluation: ``γ σ⁻¹ dy``."""
    N, C, HW = dy.shape
    m = N * HW
    for t in prange(N * C):
        n = t // C
        c = t % C
        k = gamma[c] * invstd[c]
        if training:
            a = sdy[c] / m
            b = sdyx[c] / m
            for i in range(HW):
                dx[n, c, i] = k * (dy[n, c, i] - a - xhat[n, c, i] * b)
        else:
            for i in range(HW):
                dx[n, c, i] = k * dy[n, c, i]
