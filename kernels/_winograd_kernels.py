r"""Compiled Winograd F(2x2, 3x3) convolution: 3x3 windows, stride 1, dilation 1.

Lavin & Gray (2016): a 2x2 block of outputs is ``Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` for the
4x4 input tile ``d`` it reads, so 16 multiplications replace 36, and summed over input
channels the elementwise products become 16 GEMMs ``M[ξ] = U[ξ] (CO, C) @ V[ξ] (C, tiles)``.

.. code-block:: text

    Bᵀ = [1  0 -1  0]     G = [ 1    0    0 ]     Aᵀ = [1  1  1  0]
         [0  1  1  0]         [1/2  1/2  1/2]          [0  1 -1 -1]
         [0 -1  1  0]         [1/2 -1/2  1/2]
         [0  1  0 -1]         [ 0    0    1 ]

Tiles are handled in *blocks* of whole tile rows (``g = n*TH + ti``).  Each tile row has
``TP = TW + 1`` slots, the last a dummy: with that pitch the tile index within a block,
``k = (g - g0)*TP + tj``, is uniform, so every transform step is one long loop over the
block with two or three memory streams, which LLVM vectorises (measured 4x faster than one
loop per tile row with all 16 streams, whose alias checks made LLVM give up).  The dummy
slots cost 1/TP more GEMM work and are never written out.

The transforms add and subtract explicitly rather than multiply by the 0/±1 matrices: a BLAS
product would compute 0 * inf = NaN and spread a non-finite input to outputs whose windows
do not hold it.

Each ``prange`` iteration (a chunk of blocks) owns its workspace slabs and writes only its
own tiles' outputs, so no two iterations write one element.  Reads are bounded: input rows
outside the image are treated as zero without being read, and columns are copied only
inside ``[0, W)``.
"""

import numpy as np
from numba import prange, uint64

from ._config import inline, parallel, serial
from ._gemm import gemm

# Rows of Bᵀ: row a of (Bᵀ d) is d[_I1[a]] + d[_I2[a]] for a = 1, d[_I1[a]] - d[_I2[a]] else.
_I1 = (0, 1, 2, 1)
_I2 = (2, 2, 1, 3)


@inline
def _input_transform(xf, c, C, H, W, TH, TW, pad, g0, g1, rows, tb, te, to, v):
    """``v[ξ, c, k] = (Bᵀ d_k B)[ξ]`` for channel ``c`` of the tiles of tile rows
    ``[g0, g1)`` (``k = (g - g0)*(TW + 1) + tj``; the dummy slots get what the zero padding
    of ``tb`` gives, finite for finite input); ``xf`` the flat input, ``tb``, ``te`` and
    ``to`` scratch (``tb`` zero outside the columns written)."""
    one = uint64(1)
    two = uint64(2)
    uW = uint64(W)
    uTP = uint64(TW + 1)
    uSW = two * uTP
    uHW = uint64(H * W)
    uC = uint64(C)
    urows = uint64(rows)
    L = urows * uSW + two
    P = urows * uTP + one
    nk = (g1 - g0) * (TW + 1)
    unk = uint64(nk)
    # Bᵀ d on whole input rows: row a is d[I1[a]] ± d[I2[a]].
    for g in range(g0, g1):
        n = g // TH
        r0 = 2 * (g - n * TH) - pad
        plane = (uint64(n) * uC + uint64(c)) * uHW
        for a in range(4):
            ra = r0 + _I1[a]
            rb = r0 + _I2[a]
            dst = uint64(a) * L + uint64(g - g0) * uSW + uint64(pad)
            oka = 0 <= ra < H
            okb = 0 <= rb < H
            sa = plane + uint64(ra if oka else 0) * uW
            sb = plane + uint64(rb if okb else 0) * uW
            if oka and okb:
                if a == 1:
                    for q in range(uW):
                        tb[dst + q] = xf[sa + q] + xf[sb + q]
                else:
                    for q in range(uW):
                        tb[dst + q] = xf[sa + q] - xf[sb + q]
            elif oka:
                for q in range(uW):
                    tb[dst + q] = xf[sa + q]
            elif okb:
                if a == 1:
                    for q in range(uW):
                        tb[dst + q] = xf[sb + q]
                else:
                    for q in range(uW):
                        tb[dst + q] = -xf[sb + q]
            else:
                for q in range(uW):
                    tb[dst + q] = 0
    # (·) B on the tile slots: even and odd columns apart, then four
    # differences, each a loop of two streams.
    step = uC * unk
    for a in range(4):
        e0 = uint64(a) * P
        # Signed and in one loop: measured 3x faster than unsigned here.
        ti0 = a * (rows * 2 * (TW + 1) + 2)
        ei0 = a * (rows * (TW + 1) + 1)
        for k in range(nk + 1):
            te[ei0 + k] = tb[ti0 + 2 * k]
            to[ei0 + k] = tb[ti0 + 2 * k + 1]
        b0 = uint64(c) * unk + uint64(4 * a) * step
        for k in range(unk):
            v[b0 + k] = te[e0 + k] - te[e0 + k + one]
        b0 += step
        for k in range(unk):
            v[b0 + k] = to[e0 + k] + te[e0 + k + one]
        b0 += step
        for k in range(unk):
            v[b0 + k] = te[e0 + k + one] - to[e0 + k]
        b0 += step
        for k in range(unk):
            v[b0 + k] = to[e0 + k] - to[e0 + k + one]


@inline
def tile_gemms(u, v, m, C, CO, nk):
    """``M[ξ] (CO, nk) = U[ξ] (CO, C) @ V[ξ] (C, nk)`` for every ξ of ``u``, with V and M
    stored stream after stream in ``v`` and ``m``: the forwards' multiply stage, F(2x2)'s
    16 GEMMs and F(4x4)'s 36."""
    for xi in range(u.shape[0]):
        vm = v[xi * C * nk : (xi + 1) * C * nk].reshape(C, nk)
        mm = m[xi * CO * nk : (xi + 1) * CO * nk].reshape(CO, nk)
        np.dot(u[xi], vm, mm)


@parallel
def winograd_forward(x, u, b, pad, rows, vws, mws, y):
    r"""``y = conv3x3(x, g) + b`` (stride 1, padding ``pad``) from ``u[ξ] = (G g Gᵀ)[ξ]``.

    ``x (N, C, H, W)``, ``u (16, CO, C)``, ``b (CO,)``, ``y (N, CO, HO, WO)`` with
    ``HO = H + 2 pad - 2``; ``rows`` tile rows per block; workspaces ``vws (nchunks, >=
    16*C*rows*(TW+1))`` and ``mws (nchunks, >= 16*CO*rows*(TW+1))``, ``TW = ceil(WO/2)``.

    One function with flat offsets and no slices in the loops: a call to a helper, or a
    slice's reference count, cost about 120 ns each, as much as a tile row's work (measured).
    """
    N, C, H, W = x.shape
    CO = u.shape[1]
    HO, WO = y.shape[2], y.shape[3]
    TH = (HO + 1) // 2
    TW = (WO + 1) // 2
    G = N * TH  # tile rows of the batch
    blocks = (G + rows - 1) // rows
    nchunks = vws.shape[0]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    # Offsets below are unsigned: signed index arithmetic in an inner loop keeps LLVM from
    # vectorising it (NUMBA_NOTES.md), and every offset here is >= 0 by construction.
    one = uint64(1)
    two = uint64(2)
    uTP = uint64(TW + 1)  # tile slots per tile row, the last a dummy
    uCO = uint64(CO)
    full = uint64(WO // 2)  # tiles with both output columns inside
    for ch in prange(nchunks):
        v = vws[ch]
        m = mws[ch]
        # Rows of Bᵀ d per tile row, SW apart; the columns outside [pad, pad + W) of each
        # stay zero (the padding) as only those inside are written.
        tb = np.zeros(4 * (rows * 2 * (TW + 1) + 2), dtype=x.dtype)
        te = np.empty(4 * (rows * (TW + 1) + 1), dtype=x.dtype)
        to = np.empty(4 * (rows * (TW + 1) + 1), dtype=x.dtype)
        pq = np.empty(8 * rows * (TW + 1), dtype=x.dtype)
        eo = np.empty(4 * rows * (TW + 1), dtype=x.dtype)
        for blk in range(ch * blocks // nchunks, (ch + 1) * blocks // nchunks):
            g0 = blk * rows
            g1 = min(G, g0 + rows)
            nk = (g1 - g0) * (TW + 1)  # tile slots in this block
            unk = uint64(nk)
            for c in range(C):
                _input_transform(xf, c, C, H, W, TH, TW, pad, g0, g1, rows, tb, te, to, v)
            tile_gemms(u, v, m, C, CO, nk)
            step = uCO * unk
            for co in range(CO):
                # Aᵀ M: p = s0 + s1 + s2, q = s1 - s2 - s3 over M's rows s_a; then · A.
                bias = b[co]
                for bb in range(4):
                    i0 = uint64(co) * unk + uint64(bb) * step
                    i1 = i0 + uint64(4) * step
                    i2 = i0 + uint64(8) * step
                    i3 = i0 + uint64(12) * step
                    p = uint64(bb) * unk
                    q = uint64(4 + bb) * unk
                    for k in range(unk):
                        pq[p + k] = m[i0 + k] + m[i1 + k] + m[i2 + k]
                    for k in range(unk):
                        pq[q + k] = m[i1 + k] - m[i2 + k] - m[i3 + k]
                for r in range(2):
                    p0 = uint64(4 * r) * unk
                    p1 = p0 + unk
                    p2 = p1 + unk
                    p3 = p2 + unk
                    e = uint64(2 * r) * unk
                    o = e + unk
                    for k in range(unk):
                        eo[e + k] = pq[p0 + k] + pq[p1 + k] + pq[p2 + k] + bias
                    for k in range(unk):
                        eo[o + k] = pq[p1 + k] - pq[p2 + k] - pq[p3 + k] + bias
                for g in range(g0, g1):
                    n = g // TH
                    h0 = 2 * (g - n * TH)
                    k0 = uint64(g - g0) * uTP
                    for r in range(2):
                        if h0 + r < HO:
                            dst = (
                                (uint64(n) * uCO + uint64(co)) * uint64(HO) + uint64(h0 + r)
                            ) * uint64(WO)
                            e = uint64(2 * r) * unk + k0
                            o = e + unk
                            for j in range(full):
                                yf[dst + two * j] = eo[e + j]
                                yf[dst + two * j + one] = eo[o + j]
                            if full < uint64(TW):
                                yf[dst + two * full] = eo[e + full]


@parallel
def winograd_weight_grad(x, dy, pad, rows, vws, yws, part):
    r"""Partial sums ``part[ch, ξ] (CO, C) = Σ_tiles Ŷ[ξ] (CO, tiles) @ V[ξ]ᵀ (tiles, C)``
    over the blocks of chunk ``ch``, where ``V = Bᵀ d B`` as in the forward and
    ``Ŷ = A dY Aᵀ`` for each 2x2 tile of ``dy``; the wrapper sums the chunks and takes
    ``dW = Gᵀ M G``.  This is the forward's adjoint: with ``Y = Aᵀ [U ⊙ V] A`` and
    ``U = G g Gᵀ``, ``∂L/∂U = (A dY Aᵀ) ⊙ V`` and ``∂L/∂g = Gᵀ (∂L/∂U) G``.

    ``x (N, C, H, W)``, ``dy (N, CO, HO, WO)`` with ``HO = H + 2 pad - 2``; ``rows`` tile
    rows per block; ``vws (nchunks, >= 16*C*rows*(TW+1))``, ``yws (nchunks, >=
    16*CO*rows*(TW+1))``, ``part (nchunks, 16, CO, C)`` (overwritten).  Ŷ is zero on the
    dummy slots and outside ``dy`` (odd ``HO`` or ``WO``), so they add nothing.
    """
    N, C, H, W = x.shape
    CO = dy.shape[1]
    HO, WO = dy.shape[2], dy.shape[3]
    TH = (HO + 1) // 2
    TW = (WO + 1) // 2
    G = N * TH
    blocks = (G + rows - 1) // rows
    nchunks = vws.shape[0]
    xf = x.reshape(-1)
    dyf = dy.reshape(-1)
    full = WO // 2  # tiles with both columns inside dy
    for ch in prange(nchunks):
        v = vws[ch]
        yh = yws[ch]
        pf = part[ch].reshape(-1)
        pf[:] = 0
        zz = np.zeros(2, dtype=x.dtype)
        zz[1] = 1
        zero = zz[0]
        one = zz[1]  # in x's dtype: a float64 factor would make the loops below float64
        tb = np.zeros(4 * (rows * 2 * (TW + 1) + 2), dtype=x.dtype)
        te = np.empty(4 * (rows * (TW + 1) + 1), dtype=x.dtype)
        to = np.empty(4 * (rows * (TW + 1) + 1), dtype=x.dtype)
        slots = rows * (TW + 1)
        ta = np.empty(slots, dtype=x.dtype)
        tbb = np.empty(slots, dtype=x.dtype)
        tc = np.empty(slots, dtype=x.dtype)
        td = np.empty(slots, dtype=x.dtype)
        p1 = np.empty(slots, dtype=x.dtype)
        q1 = np.empty(slots, dtype=x.dtype)
        p2 = np.empty(slots, dtype=x.dtype)
        q2 = np.empty(slots, dtype=x.dtype)
        for blk in range(ch * blocks // nchunks, (ch + 1) * blocks // nchunks):
            g0 = blk * rows
            g1 = min(G, g0 + rows)
            nk = (g1 - g0) * (TW + 1)
            for c in range(C):
                _input_transform(xf, c, C, H, W, TH, TW, pad, g0, g1, rows, tb, te, to, v)
            # Ŷ = A dY Aᵀ: the rows of A dY are (a, b), (a + c, b + d), (a - c, b - d),
            # (-c, -d) for the tile [[a, b], [c, d]], and each row (p, q) becomes
            # (p, p + q, p - q, -q).  Stream ξ = 4i + j starts at (ξ CO + co) nk.
            s = CO * nk
            us = uint64(s)
            unk = uint64(nk)
            for co in range(CO):
                # The tiles' four values, each a stream over the block's slots (even and
                # odd columns read apart), then Ŷ one stream at a time: loops of one output
                # and at most four inputs, which LLVM vectorises (16 outputs in one loop
                # ran 3x slower).
                for g in range(g0, g1):
                    n = g // TH
                    h0 = 2 * (g - n * TH)
                    r0 = ((n * CO + co) * HO + h0) * WO
                    k0 = (g - g0) * (TW + 1)
                    if h0 + 1 < HO:
                        r1 = r0 + WO
                        for tj in range(full):
                            ta[k0 + tj] = dyf[r0 + 2 * tj]
                            tbb[k0 + tj] = dyf[r0 + 2 * tj + 1]
                            tc[k0 + tj] = dyf[r1 + 2 * tj]
                            td[k0 + tj] = dyf[r1 + 2 * tj + 1]
                        if full < TW:  # odd WO: the last tile's second column is outside
                            tc[k0 + full] = dyf[r1 + 2 * full]
                    else:  # odd HO: the last tile row's second row is outside
                        for tj in range(full):
                            ta[k0 + tj] = dyf[r0 + 2 * tj]
                            tbb[k0 + tj] = dyf[r0 + 2 * tj + 1]
                            tc[k0 + tj] = zero
                            td[k0 + tj] = zero
                        if full < TW:
                            tc[k0 + full] = zero
                    if full < TW:
                        ta[k0 + full] = dyf[r0 + 2 * full]
                        tbb[k0 + full] = zero
                        td[k0 + full] = zero
                    # the dummy slot: nothing is read (past the last tile, r0 + WO may lie
                    # beyond dy)
                    ta[k0 + TW] = zero
                    tbb[k0 + TW] = zero
                    tc[k0 + TW] = zero
                    td[k0 + TW] = zero
                for k in range(unk):  # rows of A dY: (a, b), (a + c, b + d), ...
                    p1[k] = ta[k] + tc[k]
                for k in range(unk):
                    q1[k] = tbb[k] + td[k]
                for k in range(unk):
                    p2[k] = ta[k] - tc[k]
                for k in range(unk):
                    q2[k] = tbb[k] - td[k]
                o = uint64(co) * unk
                for i in range(4):  # each row (p, q) of A dY gives (p, p + q, p - q, -q)
                    pp = ta if i == 0 else (p1 if i == 1 else (p2 if i == 2 else tc))
                    qq = tbb if i == 0 else (q1 if i == 1 else (q2 if i == 2 else td))
                    sg = one if i < 3 else -one
                    e = o + uint64(4 * i) * us
                    for k in range(unk):
                        yh[e + k] = sg * pp[k]
                    e += us
                    for k in range(unk):
                        yh[e + k] = sg * (pp[k] + qq[k])
                    e += us
                    for k in range(unk):
                        yh[e + k] = sg * (pp[k] - qq[k])
                    e += us
                    for k in range(unk):
                        yh[e + k] = -sg * qq[k]
            for xi in range(16):
                a0, b0, c0 = xi * s, xi * C * nk, xi * CO * C
                gemm(False, True, CO, C, nk, yh, a0, nk, v, b0, nk, 1.0, pf, c0, C)


@serial
def wide_product(a, b, out):
    """``out (P, Q) = a (P, R) @ b (R, Q)`` for small ``P``, ``R`` and wide ``Q``, serial: the
    filter transforms ``G g Gᵀ`` and ``Gᵀ M G`` (:mod:`._winograd`).  NumPy's ``@`` would
    wake its BLAS threads between Numba's parallel loops, where the two pools spin against
    each other (a 2-thread weight gradient ran 16-19 ms instead of 8.5); np.einsum's loops
    took 0.8-3.4 ms a call for 64 x 64 filters."""
    P, R = a.shape
    out[:, :] = 0
    for p in range(P):
        o = out[p]
        for r in range(R):
            f = a[p, r]
            br = b[r]
            for q in range(o.size):
                o[q] += f * br[q]
