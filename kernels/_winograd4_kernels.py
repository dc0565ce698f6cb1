r"""Compiled Winograd F(4x4, 3x3) forward and weight gradient: 3x3 windows, stride 1,
dilation 1.

Lavin & Gray (2016) with the points 0, ±1, ±2, ∞: a 4x4 block of outputs is
``Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` for the 6x6 input tile ``d`` it reads, so 36
multiplications replace 144 (F(2x2, 3x3): 16 for 36), and summed over input channels the
elementwise products become 36 GEMMs ``M[ξ] = U[ξ] (CO, C) @ V[ξ] (C, tiles)``.

.. code-block:: text

    Bᵀ = [4  0 -5  0  1  0]    G = [ 1/4    0     0  ]    Aᵀ = [1  1  1  1  1  0]
         [0 -4 -4  1  1  0]        [-1/6  -1/6  -1/6 ]         [0  1 -1  2 -2  0]
         [0  4 -4 -1  1  0]        [-1/6   1/6  -1/6 ]         [0  1  1  4  4  0]
         [0 -2 -1  2  1  0]        [1/24  1/12   1/6 ]         [0  1 -1  8 -8  1]
         [0  2 -1 -2  1  0]        [1/24 -1/12   1/6 ]
         [0  4  0 -5  0  1]        [ 0     0     1   ]

The layout follows :mod:`._winograd_kernels`: tiles in blocks of whole tile rows, ``TW + 1``
slots per tile row (the last a dummy) so that every transform step is one long loop over
the block's slots.  Per output, V and M hold 36/16 values instead of 16/4: 0.56x the
memory traffic of F(2x2, 3x3) as well as 0.56x the multiplications.

Unlike F(2x2, 3x3), the transforms mix an input value into outputs whose windows do not
hold it (the coefficients cancel), so a non-finite input, or an intermediate that overflows,
can make finite outputs NaN.  Every output value of the forward also goes through ``o * 0``
into a per-chunk check, and the wrapper redoes the convolution on the F(2x2, 3x3) path when
it is not finite; a non-finite weight gradient goes back to im2col's (:mod:`.conv`).
"""

import numpy as np
from numba import prange

from ._config import inline, parallel
from ._gemm import gemm
from ._winograd_kernels import tile_gemms


@inline
def _row(xf, zero, plane, r, H, W):
    """Row ``r`` of the plane starting at ``plane``, or zeros outside ``[0, H)``."""
    if 0 <= r < H:
        return xf[plane + r * W : plane + (r + 1) * W]
    return zero


@inline
def _input_transform(xf, zrow, c, C, H, W, TH, TP, pad, g0, g1, L, tb, ph, v, two, four, five):
    """``v[ξ, c, k] = (Bᵀ d_k B)[ξ]`` for channel ``c`` of the tiles of tile rows
    ``[g0, g1)`` (``k = (g - g0)*TP + tj``; a dummy slot gets finite values for finite
    input); ``xf`` the flat input, ``zrow`` W zeros, ``tb`` (6 rows of ``L``, zero outside
    the columns written) and ``ph`` scratch; ``two``, ``four``, ``five`` in x's dtype."""
    SW = 4 * TP
    nk = (g1 - g0) * TP
    n1 = nk + 1
    vstep = C * nk
    # Bᵀ d on whole input rows.
    for g in range(g0, g1):
        n = g // TH
        r0 = 4 * (g - n * TH) - pad
        plane = (n * C + c) * H * W
        d0 = _row(xf, zrow, plane, r0, H, W)
        d1 = _row(xf, zrow, plane, r0 + 1, H, W)
        d2 = _row(xf, zrow, plane, r0 + 2, H, W)
        d3 = _row(xf, zrow, plane, r0 + 3, H, W)
        d4 = _row(xf, zrow, plane, r0 + 4, H, W)
        d5 = _row(xf, zrow, plane, r0 + 5, H, W)
        o = (g - g0) * SW + pad
        t0 = tb[o : o + W]
        t1 = tb[L + o : L + o + W]
        t2 = tb[2 * L + o : 2 * L + o + W]
        t3 = tb[3 * L + o : 3 * L + o + W]
        t4 = tb[4 * L + o : 4 * L + o + W]
        t5 = tb[5 * L + o : 5 * L + o + W]
        for q in range(W):
            t0[q] = four * d0[q] - five * d2[q] + d4[q]
        for q in range(W):
            t1[q] = (d3[q] + d4[q]) - four * (d1[q] + d2[q])
        for q in range(W):
            t2[q] = (d4[q] - d3[q]) + four * (d1[q] - d2[q])
        for q in range(W):
            t3[q] = (d4[q] - d2[q]) + two * (d3[q] - d1[q])
        for q in range(W):
            t4[q] = (d4[q] - d2[q]) - two * (d3[q] - d1[q])
        for q in range(W):
            t5[q] = four * d1[q] - five * d3[q] + d5[q]
    # (·) B on the tile slots: the four column phases apart, then six
    # combinations, each a loop of at most four streams.
    for a in range(6):
        s = tb[a * L : a * L + 4 * n1]
        p0 = ph[0:n1]
        p1 = ph[n1 : 2 * n1]
        p2 = ph[2 * n1 : 3 * n1]
        p3 = ph[3 * n1 : 4 * n1]
        for k in range(n1):
            p0[k] = s[4 * k]
            p1[k] = s[4 * k + 1]
            p2[k] = s[4 * k + 2]
            p3[k] = s[4 * k + 3]
        o = 6 * a * vstep + c * nk
        v0 = v[o : o + nk]
        v1 = v[o + vstep : o + vstep + nk]
        v2 = v[o + 2 * vstep : o + 2 * vstep + nk]
        v3 = v[o + 3 * vstep : o + 3 * vstep + nk]
        v4 = v[o + 4 * vstep : o + 4 * vstep + nk]
        v5 = v[o + 5 * vstep : o + 5 * vstep + nk]
        # column 4 of tile k is phase 0 of slot k + 1, column 5 phase 1
        for k in range(nk):
            v0[k] = four * p0[k] - five * p2[k] + p0[k + 1]
        for k in range(nk):
            v1[k] = (p3[k] + p0[k + 1]) - four * (p1[k] + p2[k])
        for k in range(nk):
            v2[k] = (p0[k + 1] - p3[k]) + four * (p1[k] - p2[k])
        for k in range(nk):
            v3[k] = (p0[k + 1] - p2[k]) + two * (p3[k] - p1[k])
        for k in range(nk):
            v4[k] = (p0[k + 1] - p2[k]) - two * (p3[k] - p1[k])
        for k in range(nk):
            v5[k] = four * p1[k] - five * p3[k] + p1[k + 1]


@parallel
def winograd4_forward(x, u, b, pad, rows, vws, mws, y, flags):
    r"""``y = conv3x3(x, g) + b`` (stride 1, padding ``pad``) from ``u[ξ] = (G g Gᵀ)[ξ]``.

    ``x (N, C, H, W)``, ``u (36, CO, C)``, ``b (CO,)``, ``y (N, CO, HO, WO)`` with
    ``HO = H + 2 pad - 2``; ``rows`` tile rows per block; workspaces ``vws (nchunks, >=
    36*C*rows*(TW+1))`` and ``mws (nchunks, >= 36*CO*rows*(TW+1))``, ``TW = ceil(WO/4)``;
    ``flags (nchunks,)`` gets 0 where all of a chunk's outputs are finite, else NaN.
    """
    N, C, H, W = x.shape
    CO = u.shape[1]
    HO, WO = y.shape[2], y.shape[3]
    TH = (HO + 3) // 4
    TW = (WO + 3) // 4
    TP = TW + 1  # tile slots per tile row, the last a dummy
    SW = 4 * TP  # columns of a tile row in tb (a tile starts every 4)
    L = rows * SW + 4  # a row of tb; the dummy slot of the last tile row reads 4 past
    G = N * TH
    blocks = (G + rows - 1) // rows
    nchunks = vws.shape[0]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    for ch in prange(nchunks):
        v = vws[ch]
        m = mws[ch]
        # constants in x's dtype: a float64 factor would make the loops float64
        kk = np.empty(5, dtype=x.dtype)
        kk[0] = 0
        kk[1] = 2
        kk[2] = 4
        kk[3] = 5
        kk[4] = 8
        zero, two, four, five, eight = kk[0], kk[1], kk[2], kk[3], kk[4]
        zrow = np.zeros(W, dtype=x.dtype)
        # Rows of Bᵀ d per tile row, SW apart; the columns outside [pad, pad + W) of each
        # stay zero (the padding) as only those inside are written.
        tb = np.zeros(6 * L, dtype=x.dtype)
        ph = np.empty(4 * (rows * TP + 1), dtype=x.dtype)
        pq = np.empty(24 * rows * TP, dtype=x.dtype)
        ot = np.empty(16 * rows * TP, dtype=x.dtype)
        chk = np.zeros(16 * rows * TP, dtype=x.dtype)
        for blk in range(ch * blocks // nchunks, (ch + 1) * blocks // nchunks):
            g0 = blk * rows
            g1 = min(G, g0 + rows)
            nk = (g1 - g0) * TP  # tile slots in this block
            for c in range(C):
                _input_transform(
                    xf, zrow, c, C, H, W, TH, TP, pad, g0, g1, L, tb, ph, v, two, four, five
                )
            tile_gemms(u, v, m, C, CO, nk)
            mstep = CO * nk
            for co in range(CO):
                bias = b[co]
                # Aᵀ M: rows (0..5) of M's 6x6 -> 4, for each of the 6 columns.
                for j in range(6):
                    o = j * mstep + co * nk
                    m0 = m[o : o + nk]
                    m1 = m[o + 6 * mstep : o + 6 * mstep + nk]
                    m2 = m[o + 12 * mstep : o + 12 * mstep + nk]
                    m3 = m[o + 18 * mstep : o + 18 * mstep + nk]
                    m4 = m[o + 24 * mstep : o + 24 * mstep + nk]
                    m5 = m[o + 30 * mstep : o + 30 * mstep + nk]
                    q0 = pq[j * nk : (j + 1) * nk]
                    q1 = pq[(6 + j) * nk : (7 + j) * nk]
                    q2 = pq[(12 + j) * nk : (13 + j) * nk]
                    q3 = pq[(18 + j) * nk : (19 + j) * nk]
                    for k in range(nk):
                        q0[k] = m0[k] + m1[k] + m2[k] + m3[k] + m4[k]
                    for k in range(nk):
                        q1[k] = (m1[k] - m2[k]) + two * (m3[k] - m4[k])
                    for k in range(nk):
                        q2[k] = (m1[k] + m2[k]) + four * (m3[k] + m4[k])
                    for k in range(nk):
                        q3[k] = (m1[k] - m2[k]) + eight * (m3[k] - m4[k]) + m5[k]
                # · A: the 6 columns of each of the 4 rows -> 4, plus the bias, stored
                # [r, slot, column] so that an output row is one contiguous copy (four
                # streams scattered 4 apart into y cost 2.2 of 10.5 ms, 64-channel case).
                for r in range(4):
                    o = 6 * r * nk
                    s0 = pq[o : o + nk]
                    s1 = pq[o + nk : o + 2 * nk]
                    s2 = pq[o + 2 * nk : o + 3 * nk]
                    s3 = pq[o + 3 * nk : o + 4 * nk]
                    s4 = pq[o + 4 * nk : o + 5 * nk]
                    s5 = pq[o + 5 * nk : o + 6 * nk]
                    e = ot[4 * r * nk : 4 * (r + 1) * nk]
                    for k in range(nk):
                        e[4 * k] = s0[k] + s1[k] + s2[k] + s3[k] + s4[k] + bias
                        e[4 * k + 1] = (s1[k] - s2[k]) + two * (s3[k] - s4[k]) + bias
                        e[4 * k + 2] = (s1[k] + s2[k]) + four * (s3[k] + s4[k]) + bias
                        e[4 * k + 3] = (s1[k] - s2[k]) + eight * (s3[k] - s4[k]) + s5[k] + bias
                # o * 0 is 0 for finite o, NaN otherwise; an elementwise sum vectorises
                # where a scalar reduction would not (no reassociation without fastmath)
                ok = ot[: 16 * nk]
                ck = chk[: 16 * nk]
                for k in range(16 * nk):
                    ck[k] += ok[k] * zero
                for g in range(g0, g1):
                    n = g // TH
                    h0 = 4 * (g - n * TH)
                    k0 = (g - g0) * TP
                    for r in range(min(4, HO - h0)):
                        dst = ((n * CO + co) * HO + h0 + r) * WO
                        yr = yf[dst : dst + WO]
                        src = ot[4 * (r * nk + k0) : 4 * (r * nk + k0) + WO]
                        for q in range(WO):
                            yr[q] = src[q]
        f = zero
        for k in range(chk.size):
            f += chk[k]
        flags[ch] = f


@inline
def _times_a(a0, a1, a2, a3, z0, z1, z2, z3, z4, z5, nk, two, four):
    """``(z0 .. z5) = A (a0 .. a3)`` slot by slot over ``nk`` slots, for A's rows (1 0 0 0),
    (1 1 1 1), (1 -1 1 -1), (1 2 4 8), (1 -2 4 -8), (0 0 0 1): the weight gradient's
    ``A dY Aᵀ`` is this on dY's rows and then on the result's columns."""
    for k in range(nk):
        z0[k] = a0[k]
    for k in range(nk):
        z1[k] = (a0[k] + a2[k]) + (a1[k] + a3[k])
    for k in range(nk):
        z2[k] = (a0[k] + a2[k]) - (a1[k] + a3[k])
    for k in range(nk):
        z3[k] = (a0[k] + four * a2[k]) + two * (a1[k] + four * a3[k])
    for k in range(nk):
        z4[k] = (a0[k] + four * a2[k]) - two * (a1[k] + four * a3[k])
    for k in range(nk):
        z5[k] = a3[k]


@parallel
def winograd4_weight_grad(x, dy, pad, rows, vws, yws, part):
    r"""Partial sums ``part[ch, ξ] (CO, C) = Σ_tiles Ŷ[ξ] (CO, tiles) @ V[ξ]ᵀ (tiles, C)``
    over the blocks of chunk ``ch``, where ``V = Bᵀ d B`` as in the forward and
    ``Ŷ = A dY Aᵀ`` for each 4x4 tile of ``dy``; the wrapper sums the chunks and takes
    ``dW = Gᵀ M G``: the adjoint of :func:`winograd4_forward`, as
    :func:`._winograd_kernels.winograd_weight_grad` is of F(2x2, 3x3)'s.

    ``x (N, C, H, W)``, ``dy (N, CO, HO, WO)`` with ``HO = H + 2 pad - 2``; ``rows`` tile
    rows per block; ``vws (nchunks, >= 36*C*rows*(TW+1))``, ``yws (nchunks, >=
    36*CO*rows*(TW+1))``, ``part (nchunks, 36, CO, C)`` (overwritten).  Ŷ is zero on the
    dummy slots and outside ``dy``, so they add nothing; only rows of ``dy`` are read.
    """
    N, C, H, W = x.shape
    CO = dy.shape[1]
    HO, WO = dy.shape[2], dy.shape[3]
    TH = (HO + 3) // 4
    TW = (WO + 3) // 4
    TP = TW + 1
    SW = 4 * TP
    L = rows * SW + 4
    G = N * TH
    blocks = (G + rows - 1) // rows
    nchunks = vws.shape[0]
    xf = x.reshape(-1)
    dyf = dy.reshape(-1)
    for ch in prange(nchunks):
        v = vws[ch]
        yh = yws[ch]
        pf = part[ch].reshape(-1)
        pf[:] = 0
        kk = np.empty(4, dtype=x.dtype)
        kk[0] = 0
        kk[1] = 2
        kk[2] = 4
        kk[3] = 5
        zero, two, four, five = kk[0], kk[1], kk[2], kk[3]
        zrow = np.zeros(W, dtype=x.dtype)
        tb = np.zeros(6 * L, dtype=x.dtype)
        ph = np.empty(4 * (rows * TP + 1), dtype=x.dtype)
        # one row of dy, zero past WO (never written there): a tile's partial last columns
        # and the dummy slot read zeros
        srow = np.zeros(SW, dtype=x.dtype)
        tt = np.empty(16 * rows * TP, dtype=x.dtype)  # dY tile values [r, q, slot]
        zz = np.empty(24 * rows * TP, dtype=x.dtype)  # A dY [i, q, slot]
        for blk in range(ch * blocks // nchunks, (ch + 1) * blocks // nchunks):
            g0 = blk * rows
            g1 = min(G, g0 + rows)
            nk = (g1 - g0) * TP
            for c in range(C):
                _input_transform(
                    xf, zrow, c, C, H, W, TH, TP, pad, g0, g1, L, tb, ph, v, two, four, five
                )
            ystep = CO * nk
            for co in range(CO):
                for g in range(g0, g1):
                    n = g // TH
                    h0 = 4 * (g - n * TH)
                    k0 = (g - g0) * TP
                    for r in range(4):
                        o = 4 * r * nk + k0
                        t0 = tt[o : o + TP]
                        t1 = tt[o + nk : o + nk + TP]
                        t2 = tt[o + 2 * nk : o + 2 * nk + TP]
                        t3 = tt[o + 3 * nk : o + 3 * nk + TP]
                        if h0 + r < HO:
                            src = ((n * CO + co) * HO + h0 + r) * WO
                            dr = dyf[src : src + WO]
                            for q in range(WO):
                                srow[q] = dr[q]
                            for k in range(TP):
                                t0[k] = srow[4 * k]
                                t1[k] = srow[4 * k + 1]
                                t2[k] = srow[4 * k + 2]
                                t3[k] = srow[4 * k + 3]
                        else:  # rows past HO in the last tile row
                            for k in range(TP):
                                t0[k] = zero
                                t1[k] = zero
                                t2[k] = zero
                                t3[k] = zero
                # A dY: rows r (0..3) -> i (0..5), for each column q.
                for q in range(4):
                    a0 = tt[q * nk : (q + 1) * nk]
                    a1 = tt[(4 + q) * nk : (5 + q) * nk]
                    a2 = tt[(8 + q) * nk : (9 + q) * nk]
                    a3 = tt[(12 + q) * nk : (13 + q) * nk]
                    z0 = zz[q * nk : (q + 1) * nk]
                    z1 = zz[(4 + q) * nk : (5 + q) * nk]
                    z2 = zz[(8 + q) * nk : (9 + q) * nk]
                    z3 = zz[(12 + q) * nk : (13 + q) * nk]
                    z4 = zz[(16 + q) * nk : (17 + q) * nk]
                    z5 = zz[(20 + q) * nk : (21 + q) * nk]
                    _times_a(a0, a1, a2, a3, z0, z1, z2, z3, z4, z5, nk, two, four)
                # (·) Aᵀ: columns q (0..3) -> j (0..5), for each row i; stream ξ = 6i + j
                # starts at (ξ CO + co) nk.
                for i in range(6):
                    a0 = zz[4 * i * nk : (4 * i + 1) * nk]
                    a1 = zz[(4 * i + 1) * nk : (4 * i + 2) * nk]
                    a2 = zz[(4 * i + 2) * nk : (4 * i + 3) * nk]
                    a3 = zz[(4 * i + 3) * nk : (4 * i + 4) * nk]
                    o = 6 * i * ystep + co * nk
                    y0 = yh[o : o + nk]
                    y1 = yh[o + ystep : o + ystep + nk]
                    y2 = yh[o + 2 * ystep : o + 2 * ystep + nk]
                    y3 = yh[o + 3 * ystep : o + 3 * ystep + nk]
                    y4 = yh[o + 4 * ystep : o + 4 * ystep + nk]
                    y5 = yh[o + 5 * ystep : o + 5 * ystep + nk]
                    _times_a(a0, a1, a2, a3, y0, y1, y2, y3, y4, y5, nk, two, four)
            for xi in range(36):
                gemm(
                    False,
                    True,
                    CO,
                    C,
                    nk,
                    yh,
                    xi * ystep,
                    nk,
                    v,
                    xi * C * nk,
                    nk,
                    1.0,
                    pf,
                    xi * CO * C,
                    C,
                )
