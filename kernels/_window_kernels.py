"""Compiled sliding-window kernels shared by convolution, im2col and pooling.

Geometry along one axis: output position ``o`` with window offset ``k`` reads input
``i = o*stride - pad + k*dilation``.  :func:`valid_range` gives the ``o`` for which that
``i`` lies inside the input, so the loops below never test bounds per element and never
touch memory outside an array (the wrappers guarantee the shapes they are given).
"""

import numpy as np
from numba import prange

from ._config import parallel, serial


@serial
def valid_range(pad, k_off, stride, n_in, n_out):
    """``[lo, hi)`` of output positions ``o`` with ``0 <= o*stride - pad + k_off < n_in``."""
    a = pad - k_off
    lo = -((-a) // stride) if a > 0 else 0
    b = n_in - 1 + pad - k_off
    if b < 0:
        return 0, 0
    hi = b // stride + 1
    if hi > n_out:
        hi = n_out
    if lo > hi:
        lo = hi
    return lo, hi


@parallel
def im2col_into(x, n0, nb, KH, KW, sh, sw, ph, pw, dh, dw, HO, WO, out, row_stride, sample_stride):
    """Write the columns of samples ``n0 .. n0+nb`` of ``x [N, C, H, W]`` into flat ``out``.

    Row ``r = (c, kh, kw)`` of sample ``n`` starts at ``r*row_stride + n*sample_stride`` and
    holds ``HO*WO`` entries ordered (ho, wo); padded positions are zero.  The two strides
    let one kernel fill both layouts: unfold's ``[N, CKK, HW]`` and the batch-merged
    ``[CKK, N*HW]`` that feeds a single large GEMM.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    R = C * KH * KW
    for t in prange(R * nb):
        r = t // nb
        n = t % nb
        c = r // (KH * KW)
        kh = (r // KW) % KH
        kw = r % KW
        base = r * row_stride + n * sample_stride
        ylo, yhi = valid_range(ph, kh * dh, sh, H, HO)
        xlo, xhi = valid_range(pw, kw * dw, sw, W, WO)
        for ho in range(HO):
            seg = base + ho * WO
            if ho < ylo or ho >= yhi:
                for wo in range(WO):
                    out[seg + wo] = 0
                continue
            ih = ho * sh - ph + kh * dh
            for wo in range(xlo):
                out[seg + wo] = 0
            for wo in range(xlo, xhi):
                out[seg + wo] = x[n0 + n, c, ih, wo * sw - pw + kw * dw]
            for wo in range(xhi, WO):
                out[seg + wo] = 0


@parallel
def col2im_into(cols, n0, nb, KH, KW, sh, sw, ph, pw, dh, dw, HO, WO, row_stride, sample_stride, dx):
    """Adjoint of :func:`im2col_into`: sum columns back into ``dx[n0 .. n0+nb]`` (overwritten).

    Each ``(n, c)`` plane is owned by one iteration, so overlapping windows add up serially
    inside it: no two iterations write the same element.
    """
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for t in prange(nb * C):
        n = t // C
        c = t % C
        plane = dx[n0 + n, c]
        plane[:, :] = 0
        for kh in range(KH):
            ylo, yhi = valid_range(ph, kh * dh, sh, H, HO)
            for kw in range(KW):
                xlo, xhi = valid_range(pw, kw * dw, sw, W, WO)
                base = ((c * KH + kh) * KW + kw) * row_stride + n * sample_stride
                for ho in range(ylo, yhi):
                    ih = ho * sh - ph + kh * dh
                    seg = base + ho * WO
                    for wo in range(xlo, xhi):
                        plane[ih, wo * sw - pw + kw * dw] += cols[seg + wo]


@parallel
def merged_to_nchw(ymat, b, has_bias, n0, nb, y):
    """``y[n0+n, co, :] = ymat[co, n*HW : (n+1)*HW] (+ b[co])`` for the chunk's samples."""
    CO = y.shape[1]
    HW = y.shape[2]
    for t in prange(nb * CO):
        n = t // CO
        co = t % CO
        src = ymat[co, n * HW:(n + 1) * HW]
        dst = y[n0 + n, co]
        if has_bias:
            bias = b[co]
            for i in range(HW):
                dst[i] = src[i] + bias
        else:
            dst[:] = src


@parallel
def nchw_to_merged(dy, n0, nb, out):
    """``out[co, n*HW : (n+1)*HW] = dy[n0+n, co, :]``: the inverse of :func:`merged_to_nchw`."""
    CO = dy.shape[1]
    HW = dy.shape[2]
    for t in prange(nb * CO):
        n = t // CO
        co = t % CO
        out[co, n * HW:(n + 1) * HW] = dy[n0 + n, co]


@parallel
def channel_sums(dy):
    """``db[co] = sum over n, hw of dy[n, co, hw]``, accumulated in float64 per channel."""
    N, CO, HW = dy.shape
    out = np.empty(CO, dtype=np.float64)
    for co in prange(CO):
        s = 0.0
        for n in range(N):
            for i in range(HW):
                s += dy[n, co, i]
        out[co] = s
    return out
