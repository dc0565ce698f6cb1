"""Compiled pooling kernels.  Each ``(n, c)`` plane is one parallel iteration that owns its
output plane, so overlapping windows never make two iterations write one element."""

from numba import prange, uint64

from ._config import parallel


@parallel
def maxpool_fwd(x, KH, KW, sh, sw, ph, pw, y, idx):
    """``y`` = window maxima, ``idx`` = flat ``ih*W + iw`` of the first maximum in row-major
    window order; padding counts as -inf, a NaN counts as larger than any number (the first
    NaN of a window wins, so NaN propagates)."""
    N, C, H, W = x.shape
    HO, WO = y.shape[2], y.shape[3]
    xp, yp, jp = x.reshape(N * C, H * W), y.reshape(N * C, HO * WO), idx.reshape(N * C, HO * WO)
    for t in prange(N * C):
        xf = xp[t]
        yf = yp[t]
        jf = jp[t]
        for ho in range(HO):
            h0 = ho * sh - ph
            hlo = max(h0, 0)
            hhi = min(h0 + KH, H)
            for wo in range(WO):
                w0 = wo * sw - pw
                wlo = max(w0, 0)
                whi = min(w0 + KW, W)
                bi = hlo * W + wlo
                best = xf[bi]
                nan = False
                for ih in range(hlo, hhi):
                    row = ih * W
                    for iw in range(wlo, whi):
                        val = xf[row + iw]
                        nan |= val != val
                        if val > best:  # strict: keeps the first maximum
                            best = val
                            bi = row + iw
                if nan:
                    # rare path: the window's first NaN wins (testing NaN on every
                    # comparison of the main loop doubled the time of the whole kernel)
                    for ih in range(hlo, hhi):
                        for iw in range(wlo, whi):
                            k = ih * W + iw
                            if nan and xf[k] != xf[k]:
                                best = xf[k]
                                bi = k
                                nan = False
                yf[ho * WO + wo] = best
                jf[ho * WO + wo] = bi


@parallel
def maxpool_bwd(dy, idx, dx, bad):
    """``dx[n, c].flat[idx[n, c, i]] += dy[n, c, i]``; an index outside ``[0, H*W)`` is not
    followed but counted in ``bad[n*C + c]`` (the wrapper raises): checking here, in the one
    pass that reads the indices anyway, replaced two NumPy passes (min and max) that cost
    about a third of the backward.  The planes are views of arrays reshaped once, outside
    the loop: Numba's ``reshape`` is a runtime call, and three per plane took a quarter of
    the time (2x2 pooling of (64, 20, 24, 24), one thread: 157-162 -> 112-122 us)."""
    N, C, HO, WO = dy.shape
    P, L = N * C, HO * WO
    dxp = dx.reshape(P, dx.shape[2] * dx.shape[3])
    dyp, kp = dy.reshape(P, L), idx.reshape(P, L)
    HW = uint64(dxp.shape[1])
    for t in prange(P):
        plane = dxp[t]
        plane[:] = 0
        g = dyp[t]
        k = kp[t]
        nbad = 0
        for i in range(uint64(L)):
            # Branch-free: a bad index (a negative one wraps to a huge unsigned) adds into
            # element 0 instead, which is harmless because the wrapper then raises and
            # returns nothing.  The branch cost 10% (paired runs, one and two threads).
            j = uint64(k[i])
            ok = j < HW
            nbad += not ok
            plane[j if ok else uint64(0)] += g[i]
        bad[t] = nbad


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


@parallel
def maxpool2x2_fwd(x, y, idx):
    """The 2x2, stride 2, unpadded case (LeNet's), written out: 4-5x faster than the generic
    loop nest, whose 2-trip inner loops cost more than their work.  Same rules: strict >
    keeps the first maximum in row-major order, the first NaN wins."""
    N, C, H, W = x.shape
    HO, WO = y.shape[2], y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        for ho in range(HO):
            r0 = x[n, c, 2 * ho]
            r1 = x[n, c, 2 * ho + 1]
            base = 2 * ho * W
            for wo in range(WO):
                a = r0[2 * wo]
                b = r0[2 * wo + 1]
                cc = r1[2 * wo]
                d = r1[2 * wo + 1]
                best = a
                bi = base + 2 * wo
                if b > best:
                    best = b
                    bi = base + 2 * wo + 1
                if cc > best:
                    best = cc
                    bi = base + W + 2 * wo
                if d > best:
                    best = d
                    bi = base + W + 2 * wo + 1
                if not (a == a and b == b and cc == cc and d == d):
                    if a != a:
                        best, bi = a, base + 2 * wo
                    elif b != b:
                        best, bi = b, base + 2 * wo + 1
                    elif cc != cc:
                        best, bi = cc, base + W + 2 * wo
                    else:
                        best, bi = d, base + W + 2 * wo + 1
                y[n, c, ho, wo] = best
                idx[n, c, ho, wo] = bi
