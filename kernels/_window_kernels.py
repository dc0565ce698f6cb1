"""Compiled sliding-window helpers shared by convolution, im2col and pooling.

Geometry along one axis: output position ``o`` with window offset ``k`` reads input
``i = o*stride - pad + k*dilation``.  :func:`valid_range` gives the ``o`` for which that
``i`` lies inside the input, so the loops below never test bounds per element and never
touch memory outside an array (the wrappers guarantee the shapes they are given).

``geo`` below is a :class:`._geometry.Geometry`: the window and its output, by name.
"""

import numpy as np
from numba import prange, uint64

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


# At column strides above 1, output rows shorter than this are copied by one gather per
# im2col row (see im2col_block): the strided per-row copies of a few elements ran scalar
# (LeNet's conv2 forward, WO = 8, took 18% less with the gather, paired runs, one thread;
# conv1's, WO = 24, 25% more).  At stride 1 the per-row copy is contiguous and beats both.
GATHER_BELOW_WO = 16


def column_table(geo, W):
    """The ``tab`` that :func:`im2col_block` takes for geometry ``geo`` on rows of width
    ``W``: ``tab[ho*WO + wo] = ho*sH*W + wo*sW`` (uint64) when the column stride is above 1
    and ``WO < GATHER_BELOW_WO``, else empty (per-row copies)."""
    sh, sw, HO, WO = geo.sh, geo.sw, geo.ho, geo.wo
    if sw == 1 or WO >= GATHER_BELOW_WO:
        return np.empty(0, dtype=np.uint64)
    ho = np.arange(HO, dtype=np.uint64)[:, None] * np.uint64(sh * W)
    return (ho + np.arange(WO, dtype=np.uint64)[None, :] * np.uint64(sw)).reshape(-1)


@serial
def im2col_block(xf, H, W, c0, c1, h0, h1, geo, of, ostride, col0, tab):
    """Columns of one sample, given flat: ``xf`` is the sample's ``(C, H, W)`` data.

    For channels ``[c0, c1)`` and output rows ``[h0, h1)`` writes
    ``of[r*ostride + col0 + (ho - h0)*WO + wo]``, row ``r = (c - c0, kh, kw)``; zero where
    the window reads padding.  ``col0`` lets several samples share one column matrix.
    Flat unsigned offsets keep the inner copy free of index arithmetic and wraparound checks
    (3-4x faster on LeNet's 8-wide rows than 2-D slices).

    A row ``r`` whose windows all lie inside the input over ``[h0, h1)`` skips the padding
    logic: at column stride 1 it is one contiguous copy per output row (LeNet conv2's
    forward 7 % faster than the gather below, the copy alone 1.4x); at other strides, when
    ``tab`` (:func:`column_table`'s) is not empty, one gather over all its columns.
    """
    KH, KW, HO, WO = geo.kh, geo.kw, geo.ho, geo.wo
    sh, sw, ph, pw, dh, dw = geo.sh, geo.sw, geo.ph, geo.pw, geo.dh, geo.dw
    uWO = uint64(WO)
    usw = uint64(sw)
    L = uint64((h1 - h0) * WO)
    t0 = uint64(h0 * WO)
    for c in range(c0, c1):
        for kh in range(KH):
            ylo, yhi = valid_range(ph, kh * dh, sh, H, HO)
            for kw in range(KW):
                xlo, xhi = valid_range(pw, kw * dw, sw, W, WO)
                uxlo, uxhi = uint64(xlo), uint64(xhi)
                r = ((c - c0) * KH + kh) * KW + kw
                inside = xlo == 0 and xhi == WO and ylo <= h0 and h1 <= yhi
                if inside and sw == 1:
                    s = uint64((c * H + h0 * sh - ph + kh * dh) * W - pw + kw * dw)
                    d = uint64(r * ostride + col0)
                    ush = uint64(sh * W)
                    for _ in range(h1 - h0):
                        for j in range(uWO):
                            of[d + j] = xf[s + j]
                        d += uWO
                        s += ush
                    continue
                if tab.size > 0 and inside:  # (column_table: only when sw > 1)
                    # every window inside: source of column (ho, wo) is base + tab[ho*WO + wo]
                    base = uint64((c * H - ph + kh * dh) * W - pw + kw * dw)
                    d = uint64(r * ostride + col0)
                    for i in range(L):
                        of[d + i] = xf[base + tab[t0 + i]]
                    continue
                for ho in range(h0, h1):
                    d = uint64(r * ostride + col0 + (ho - h0) * WO)
                    if ho < ylo or ho >= yhi:
                        for wo in range(uWO):
                            of[d + wo] = 0
                        continue
                    for wo in range(uxlo):
                        of[d + wo] = 0
                    # source of output column wo: (c, ho*sh - ph + kh*dh, wo*sw - pw + kw*dw)
                    s = uint64((c * H + ho * sh - ph + kh * dh) * W + xlo * sw - pw + kw * dw)
                    dd = d + uxlo
                    n = uxhi - uxlo
                    if sw == 1:
                        for j in range(n):
                            of[dd + j] = xf[s + j]
                    else:
                        for j in range(n):
                            of[dd + j] = xf[s + j * usw]
                    for wo in range(uxhi, uWO):
                        of[d + wo] = 0


@serial
def col2im_block(cf, cstride, col0, c0, c1, geo, H, W, dxf):
    """Adjoint of :func:`im2col_block` over all output rows, flat: channels ``[c0, c1)`` of
    the sample ``dxf`` (``(C, H, W)`` flat) are overwritten with the sum of
    ``cf[r*cstride + col0 + ho*WO + wo]`` (rows ``r = (c - c0, kh, kw)``) at their window
    positions.  Serial within a sample, so overlapping windows add up without races."""
    KK = geo.kh * geo.kw
    for c in range(c0, c1):
        # a channel at a time, zeroed just before its sums (still in cache): one channel's
        # rows start KK rows further on; the adds are col2im_rows', in its order
        base = uint64(c * H * W)
        for i in range(uint64(H * W)):
            dxf[base + i] = 0
        col2im_rows(
            cf[col0 + (c - c0) * KK * cstride :], cstride, c, c + 1, 0, geo.ho, geo, H, W, dxf
        )


@serial
def col2im_rows(cf, cstride, c0, c1, ho0, ho1, geo, H, W, dxf):
    """Adds the columns of output rows ``[ho0, ho1)`` into channels ``[c0, c1)`` of
    ``dxf`` (flat ``(C, H, W)``): ``cf[r*cstride + (ho - ho0)*WO + wo]``, rows
    ``r = (c - c0, kh, kw)``, at their window positions.  Unlike :func:`col2im_block` it
    accumulates, so a sample's rows can be added block by block (the caller zeroes
    ``dxf`` first); serial, so overlapping windows add without races."""
    KH, KW, HO, WO = geo.kh, geo.kw, geo.ho, geo.wo
    sh, sw, ph, pw, dh, dw = geo.sh, geo.sw, geo.ph, geo.pw, geo.dh, geo.dw
    usw = uint64(sw)
    for c in range(c0, c1):
        for kh in range(KH):
            ylo, yhi = valid_range(ph, kh * dh, sh, H, HO)
            ylo, yhi = max(ylo, ho0), min(yhi, ho1)
            for kw in range(KW):
                xlo, xhi = valid_range(pw, kw * dw, sw, W, WO)
                n = uint64(xhi - xlo)
                r = ((c - c0) * KH + kh) * KW + kw
                for ho in range(ylo, yhi):
                    s = uint64(r * cstride + (ho - ho0) * WO + xlo)
                    d = uint64((c * H + ho * sh - ph + kh * dh) * W + xlo * sw - pw + kw * dw)
                    if sw == 1:
                        for j in range(n):
                            dxf[d + j] += cf[s + j]
                    else:
                        for j in range(n):
                            dxf[d + j * usw] += cf[s + j]


@parallel
def im2col_all(x, geo, tab, out):
    """``out (N, C*KH*KW, HO*WO)`` = the columns of every sample; one (n, c) per iteration."""
    N, C, H, W = x.shape
    KK = geo.kh * geo.kw
    HW = geo.ho * geo.wo
    # reshaped once here: a reshape is a runtime call, and one per plane cost a maxpool
    # backward a quarter of its time (see maxpool_bwd)
    xs, outs = x.reshape(N, C * H * W), out.reshape(N, C * KK * HW)
    for t in prange(N * C):
        n = t // C
        c = t % C
        # rows of channel c start at (c*KK)*HW in the sample's flat output
        im2col_block(xs[n], H, W, c, c + 1, 0, geo.ho, geo, outs[n][c * KK * HW :], HW, 0, tab)


@parallel
def col2im_all(cols, geo, dx):
    """Adjoint of :func:`im2col_all`; each (n, c) plane of ``dx`` is owned by one iteration."""
    N, C, H, W = dx.shape
    KK = geo.kh * geo.kw
    HW = geo.ho * geo.wo
    cs, dxs = cols.reshape(N, C * KK * HW), dx.reshape(N, C * H * W)
    for t in prange(N * C):
        n = t // C
        c = t % C
        col2im_block(cs[n][c * KK * HW :], HW, 0, c, c + 1, geo, H, W, dxs[n])


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
