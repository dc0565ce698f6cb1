r"""Convolution kernels at row stride 1 that gather columns over (channel, window column)
only and take the window rows as shifts of one GEMM operand.

At row stride 1, output row ``ho`` reads input row ``ho + kh*dh`` for window row ``kh``.
For a block of ``nb`` samples the *row columns* hold, for every row ``hp`` of the
height-padded input (``Hp = H + 2*ph`` of them), every sample ``i`` and output column
``wo``:

.. code-block:: text

    rc[(c, kw), (hp*nb + i)*WO + wo] = x_pad[n0 + i, c, hp, wo*sw + kw*dw]

With columns ordered (row, sample, column), window row ``kh`` reads the contiguous column
range that starts ``kh*dh*nb*WO`` further on, so the convolution is ``KH`` GEMMs over
shifted views of one matrix, accumulating:

.. code-block:: text

    # Forward: Y'(CO, HO*nb*WO)       = Σ_kh Wp[kh] (CO, C*KW) @ rc[:, kh-shifted]
    # dW:      dWp[kh] (CO, C*KW)     = Σ_blocks dY' (CO, HO*nb*WO) @ rc[:, kh-shifted]^T
    # dX:      drc[:, kh-shifted]    += Wp[kh]^T (C*KW, CO) @ dY';  dX = the adjoint of rc

``Wp[kh] = w[:, :, kh, :]`` as a (CO, C*KW) matrix.  The gathered matrix is ``KH*HO/Hp``
times smaller than im2col's (LeNet's conv2, 20 -> 50 channels, 5x5 on 12x12: 100 x 96
values a sample against 500 x 64), the GEMMs do the same multiply-adds, and the adjoint
scatters ``KH`` times fewer values.  Chunk ``ch`` of a ``prange`` owns workspace row
``ws[ch]`` (and ``dwp[ch]``, ``dx`` of its own samples), so no two iterations write one
element.
"""

from numba import prange, uint64

from ._config import parallel, serial
from ._gemm import gemm
from ._window_kernels import valid_range


@serial
def row_columns(xf, n0, n1, C, H, W, geo, rc):
    """``rc`` (flat, ``C*KW`` rows of ``Hp*(n1-n0)*WO``) = the row columns of samples
    ``[n0, n1)`` of ``xf`` (the batch ``(N, C, H, W)``, flat); zero where the window reads
    padding."""
    KW, WO, sw, ph, pw, dw = geo.kw, geo.wo, geo.sw, geo.ph, geo.pw, geo.dw
    nb = n1 - n0
    Hp = H + 2 * ph
    L = Hp * nb * WO
    uWO = uint64(WO)
    usw = uint64(sw)
    ustep = uint64(C * H * W)
    for c in range(C):
        for kw in range(KW):
            lo, hi = valid_range(pw, kw * dw, sw, W, WO)
            ulo, uhi = uint64(lo), uint64(hi)
            r = c * KW + kw
            for hp in range(Hp):
                h = hp - ph
                d = uint64(r * L + hp * nb * WO)
                if h < 0 or h >= H:
                    for j in range(uint64(nb * WO)):
                        rc[d + j] = 0
                    continue
                s = uint64(((n0 * C + c) * H + h) * W + lo * sw - pw + kw * dw)
                for _ in range(nb):
                    for j in range(ulo):
                        rc[d + j] = 0
                    dd = d + ulo
                    if sw == 1:
                        for j in range(uhi - ulo):
                            rc[dd + j] = xf[s + j]
                    else:
                        for j in range(uhi - ulo):
                            rc[dd + j] = xf[s + j * usw]
                    for j in range(uhi, uWO):
                        rc[d + j] = 0
                    d += uWO
                    s += ustep


@serial
def gather_dy(dyf, n0, n1, CO, HO, WO, out):
    """``out[co, (ho*nb + i)*WO + wo] = dy[n0 + i, co, ho*WO + wo]`` (flat)."""
    nb = n1 - n0
    M = HO * nb * WO
    uWO = uint64(WO)
    for i in range(nb):
        for co in range(CO):
            s = uint64(((n0 + i) * CO + co) * HO * WO)
            d = uint64(co * M + i * WO)
            for _ in range(HO):
                for j in range(uWO):
                    out[d + j] = dyf[s + j]
                s += uWO
                d += uint64(nb * WO)


@parallel
def rowshift_forward(x, wp, b, geo, nb, ws, ys, y):
    """``y (N, CO, HO*WO)`` = the convolution of ``x`` with ``wp (KH, CO, C*KW)`` plus
    ``b``; units of ``nb`` samples; ``ws (nchunks, >= C*KW*Hp*nb*WO)`` and
    ``ys (nchunks, >= CO*HO*nb*WO)`` are workspaces."""
    N, C, H, W = x.shape
    KH, CO, R = wp.shape
    HO, WO, dh = geo.ho, geo.wo, geo.dh
    Hp = H + 2 * geo.ph
    xf, wf, yf = x.reshape(-1), wp.reshape(-1), y.reshape(-1)
    units = (N + nb - 1) // nb
    nchunks = ws.shape[0]
    uWO = uint64(WO)
    for ch in prange(nchunks):
        for u in range(ch * units // nchunks, (ch + 1) * units // nchunks):
            n0 = u * nb
            n1 = min(N, n0 + nb)
            m = n1 - n0
            L = Hp * m * WO
            M = HO * m * WO
            row_columns(xf, n0, n1, C, H, W, geo, ws[ch])
            for kh in range(KH):
                beta = 0.0 if kh == 0 else 1.0
                gemm(
                    False,
                    False,
                    CO,
                    M,
                    R,
                    wf,
                    kh * CO * R,
                    R,
                    ws[ch],
                    kh * dh * m * WO,
                    L,
                    beta,
                    ys[ch],
                    0,
                    M,
                )
            yo = ys[ch]
            for i in range(m):
                for co in range(CO):
                    d = uint64(((n0 + i) * CO + co) * HO * WO)
                    s = uint64(co * M + i * WO)
                    bias = b[co]
                    for _ in range(HO):
                        for j in range(uWO):
                            yf[d + j] = yo[s + j] + bias
                        d += uWO
                        s += uint64(m * WO)


@serial
def scatter_rows(drc, L, n0, n1, C, H, W, geo, dxf):
    """``dx`` of samples ``[n0, n1)`` (flat ``dxf``) = the adjoint of :func:`row_columns`
    applied to ``drc``: each value added at the input position it was gathered from,
    padding dropped."""
    KW, WO, sw, ph, pw, dw = geo.kw, geo.wo, geo.sw, geo.ph, geo.pw, geo.dw
    m = n1 - n0
    usw = uint64(sw)
    uWO = uint64(WO)
    ustep = uint64(C * H * W)
    for j in range(uint64(n0 * C * H * W), uint64(n1 * C * H * W)):
        dxf[j] = 0
    for c in range(C):
        for kw in range(KW):
            lo, hi = valid_range(pw, kw * dw, sw, W, WO)
            n = uint64(hi - lo)
            r = c * KW + kw
            for h in range(H):
                s = uint64(r * L + (h + ph) * m * WO + lo)
                d = uint64(((n0 * C + c) * H + h) * W + lo * sw - pw + kw * dw)
                for _ in range(m):
                    if sw == 1:
                        for j in range(n):
                            dxf[d + j] += drc[s + j]
                    else:
                        for j in range(n):
                            dxf[d + j * usw] += drc[s + j]
                    s += uWO
                    d += ustep


@parallel
def rowshift_backward(dy, x, wp, geo, nb, need_dx, ws, dws, dyws, dwp, dbp, dx):
    """Both gradients in one pass over the units of ``nb`` samples, which gathers each
    unit's dY' once: partial weight gradients ``dwp[ch] (KH, CO, C*KW)`` and bias
    gradients ``dbp[ch] (CO,)`` (float64), each the sum over chunk ``ch``'s units, and,
    if ``need_dx``, ``dx``, each unit owning its samples.  ``ws``/``dws`` (row columns and
    their gradient) and ``dyws`` (dY') are per-chunk workspaces."""
    N, C, H, W = x.shape
    KH, CO, R = wp.shape
    HO, WO, dh = geo.ho, geo.wo, geo.dh
    Hp = H + 2 * geo.ph
    xf, dyf, wf, dxf = x.reshape(-1), dy.reshape(-1), wp.reshape(-1), dx.reshape(-1)
    units = (N + nb - 1) // nb
    nchunks = ws.shape[0]
    for ch in prange(nchunks):
        acc = dwp[ch].reshape(-1)
        dbc = dbp[ch]
        dbc[:] = 0
        u0, u1 = ch * units // nchunks, (ch + 1) * units // nchunks
        if u0 == u1:
            acc[:] = 0
        for u in range(u0, u1):
            n0 = u * nb
            n1 = min(N, n0 + nb)
            m = n1 - n0
            L = Hp * m * WO
            M = HO * m * WO
            g = dyws[ch]
            gather_dy(dyf, n0, n1, CO, HO, WO, g)
            for co in range(CO):
                t = 0.0
                for j in range(uint64(co * M), uint64((co + 1) * M)):
                    t += g[j]
                dbc[co] += t
            row_columns(xf, n0, n1, C, H, W, geo, ws[ch])
            beta = 0.0 if u == u0 else 1.0
            for kh in range(KH):
                gemm(False, True, CO, R, M, g, 0, M, ws[ch], kh * dh * m * WO, L,
                     beta, acc, kh * CO * R, R)  # fmt: skip
            if not need_dx:
                continue
            drc = dws[ch]
            # window row 0 writes columns [0, M) of every row; the rest start at zero
            for r in range(R):
                for j in range(uint64(r * L + M), uint64((r + 1) * L)):
                    drc[j] = 0
            for kh in range(KH):
                beta = 0.0 if kh == 0 else 1.0
                gemm(True, False, R, M, CO, wf, kh * CO * R, R, g, 0, M,
                     beta, drc, kh * dh * m * WO, L)  # fmt: skip
            scatter_rows(drc, L, n0, n1, C, H, W, geo, dxf)
