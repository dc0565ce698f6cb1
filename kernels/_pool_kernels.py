"""Compiled pooling kernels.  Each ``(n, c)`` plane is one parallel iteration that owns its
output plane, so overlapping windows never make two iterations write one element."""

import numpy as np
from numba import prange

from ._config import parallel
from ._window_kernels import valid_range


@parallel
def maxpool_fwd(x, KH, KW, sh, sw, ph, pw, y, idx):
    """``y`` = window maxima, ``idx`` = flat ``ih*W + iw`` of the first maximum in row-major
    window order; padding counts as -inf, a NaN counts as larger than any number (the first
    NaN of a window wins, so NaN propagates)."""
    N, C, H, W = x.shape
    HO, WO = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        plane = x[n, c]
        for ho in range(HO):
            h0 = ho * sh - ph
            hlo = max(h0, 0)
            hhi = min(h0 + KH, H)
            for wo in range(WO):
                w0 = wo * sw - pw
                wlo = max(w0, 0)
                whi = min(w0 + KW, W)
                best = plane[hlo, wlo]
                bi = hlo * W + wlo
                if best == best:
                    done = False
                    for ih in range(hlo, hhi):
                        for iw in range(wlo, whi):
                            val = plane[ih, iw]
                            if val > best:
                                best = val
                                bi = ih * W + iw
                            elif val != val:
                                best = val
                                bi = ih * W + iw
                                done = True
                                break
                        if done:
                            break
                y[n, c, ho, wo] = best
                idx[n, c, ho, wo] = bi


@parallel
def maxpool_bwd(dy, idx, dx):
    N, C, HO, WO = dy.shape
    W = dx.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        plane = dx[n, c]
        plane[:, :] = 0
        for ho in range(HO):
            for wo in range(WO):
                k = idx[n, c, ho, wo]
                plane[k // W, k % W] += dy[n, c, ho, wo]


@parallel
def avgpool_fwd(x, KH, KW, sh, sw, ph, pw, y):
    N, C, H, W = x.shape
    HO, WO = y.shape[2], y.shape[3]
    inv = 1.0 / (KH * KW)
    for t in prange(N * C):
        n = t // C
        c = t % C
        plane = x[n, c]
        for ho in range(HO):
            h0 = ho * sh - ph
            for wo in range(WO):
                w0 = wo * sw - pw
                s = 0.0
                for ih in range(max(h0, 0), min(h0 + KH, H)):
                    for iw in range(max(w0, 0), min(w0 + KW, W)):
                        s += plane[ih, iw]
                y[n, c, ho, wo] = s * inv


@parallel
def avgpool_bwd(dy, KH, KW, sh, sw, ph, pw, dx):
    N, C, H, W = dx.shape
    HO, WO = dy.shape[2], dy.shape[3]
    inv = 1.0 / (KH * KW)
    for t in prange(N * C):
        n = t // C
        c = t % C
        plane = dx[n, c]
        plane[:, :] = 0
        for ho in range(HO):
            h0 = ho * sh - ph
            for wo in range(WO):
                w0 = wo * sw - pw
                g = dy[n, c, ho, wo] * inv
                for ih in range(max(h0, 0), min(h0 + KH, H)):
                    for iw in range(max(w0, 0), min(w0 + KW, W)):
                        plane[ih, iw] += g
