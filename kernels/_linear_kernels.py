"""Compiled linear-layer kernels: GEMMs split into row blocks, one single-threaded BLAS
call (Numba's ``np.dot``) per ``prange`` iteration, each writing its own rows.  Keeping
these inside Numba's thread pool matters: NumPy's own multithreaded BLAS between Numba's
parallel loops made the two pools spin against each other (a LeNet step took 30 ms
instead of 10)."""

import numpy as np
from numba import prange

from ._config import parallel


@parallel
def linear_fwd(x, w, b, has_bias, nch, y):
    """``y[rows] = x[rows] @ w.T (+ b)``, rows split in ``nch`` blocks."""
    N = x.shape[0]
    O = w.shape[0]
    for ch in prange(nch):
        r0 = ch * N // nch
        r1 = (ch + 1) * N // nch
        if r1 > r0:
            yb = y[r0:r1]
            np.dot(x[r0:r1], w.T, yb)
            if has_bias:
                for i in range(r1 - r0):
                    for o in range(O):
                        yb[i, o] += b[o]


@parallel
def rows_matmul(a, b, nch, out):
    """``out[rows] = a[rows] @ b`` (``b`` C- or F-contiguous), rows split in ``nch`` blocks."""
    N = a.shape[0]
    for ch in prange(nch):
        r0 = ch * N // nch
        r1 = (ch + 1) * N // nch
        if r1 > r0:
            np.dot(a[r0:r1], b, out[r0:r1])


@parallel
def column_sums(a, nch):
    """``Σ_rows a`` per column (float64 accumulation), columns split in ``nch`` blocks."""
    N, M = a.shape
    out = np.zeros(M, dtype=np.float64)
    for ch in prange(nch):
        c0 = ch * M // nch
        c1 = (ch + 1) * M // nch
        for i in range(N):
            for j in range(c0, c1):
                out[j] += a[i, j]
    return out
