"""Compiled convolution kernels: im2col of a block into a per-thread workspace, then a
single-threaded BLAS GEMM (Numba's ``np.dot``) on it, inside one ``prange``.

The output positions of the whole batch are rows ``g = n*HO + ho`` of ``WO`` columns each.
A *unit* of the forward and weight-gradient work is a contiguous range of such rows, which
may span several samples: that makes the GEMM's column count large enough for BLAS to run
near its peak on small images (LeNet's 8x8 outputs) while bounding the block on large ones.
Units are split into ``nchunks`` contiguous chunks, one ``prange`` iteration each; chunk
``ch`` owns workspace slab ``ws[ch]`` and, for the weight gradient, the partial sum
``dwp[ch]`` (summed by the caller), so no two iterations write one element.
"""

import numpy as np
from numba import prange

from ._config import inline, parallel
from ._gemm import gemm
from ._window_kernels import col2im_block, col2im_rows, im2col_block


@inline
def row_span(g0, g1, n, HO, WO):
    """Sample ``n``'s share of the unit of output rows ``[g0, g1)`` (rows ``g = n*HO + ho``
    of the whole batch): its rows ``[h0, h1)`` and the column ``c0`` where they start in the
    unit's ``WO``-wide column block."""
    h0 = max(g0 - n * HO, 0)
    h1 = min(g1 - n * HO, HO)
    return h0, h1, (n * HO + h0 - g0) * WO


@parallel
def conv_forward(x, wmat, b, geo, tab, rows, ws, tmp, y):
    r"""``y[n, :, p] = wmat (CO, R) @ cols[:, (n, p)] + b`` for units of ``rows`` output rows.

    ``ws (nchunks, >= R*rows*WO)`` and ``tmp (nchunks, >= CO*rows*WO)`` are workspaces;
    ``tab`` as :func:`._window_kernels.im2col_block` takes it.
    """
    N, C, H, W = x.shape
    CO, R = wmat.shape
    HO, WO = geo.ho, geo.wo
    G = N * HO
    units = (G + rows - 1) // rows
    nchunks = ws.shape[0]
    for ch in prange(nchunks):
        for u in range(ch * units // nchunks, (ch + 1) * units // nchunks):
            g0 = u * rows
            g1 = min(G, g0 + rows)
            m = (g1 - g0) * WO
            cols = ws[ch, : R * m].reshape(R, m)
            for n in range(g0 // HO, (g1 - 1) // HO + 1):
                h0, h1, c0 = row_span(g0, g1, n, HO, WO)
                im2col_block(x[n].reshape(-1), H, W, 0, C, h0, h1, geo, ws[ch], m, c0, tab)
            out = tmp[ch, : CO * m].reshape(CO, m)
            np.dot(wmat, cols, out)
            for n in range(g0 // HO, (g1 - 1) // HO + 1):
                h0, h1, c0 = row_span(g0, g1, n, HO, WO)
                L = (h1 - h0) * WO
                for co in range(CO):
                    dst = y[n, co, h0 * WO : h1 * WO]
                    src = out[co, c0 : c0 + L]
                    bias = b[co]
                    for i in range(L):
                        dst[i] = src[i] + bias


@parallel
def conv_weight_grad(dy, x, geo, tab, rows, ws, dyws, dwp):
    r"""Partial weight gradients ``dwp[ch] = Σ_{units of ch} dY_u (CO, m) @ cols_u (R, m)^T``.

    ``dyws (nchunks, >= CO*rows*WO)`` gathers the unit's upstream block contiguously.
    """
    N, C, H, W = x.shape
    CO = dy.shape[1]
    R = dwp.shape[2]
    HO, WO = geo.ho, geo.wo
    G = N * HO
    units = (G + rows - 1) // rows
    nchunks = ws.shape[0]
    for ch in prange(nchunks):
        acc = dwp[ch]
        acc[:, :] = 0
        part = np.empty((CO, R), dtype=dwp.dtype)
        for u in range(ch * units // nchunks, (ch + 1) * units // nchunks):
            g0 = u * rows
            g1 = min(G, g0 + rows)
            m = (g1 - g0) * WO
            cols = ws[ch, : R * m].reshape(R, m)
            dyb = dyws[ch, : CO * m].reshape(CO, m)
            for n in range(g0 // HO, (g1 - 1) // HO + 1):
                h0, h1, c0 = row_span(g0, g1, n, HO, WO)
                im2col_block(x[n].reshape(-1), H, W, 0, C, h0, h1, geo, ws[ch], m, c0, tab)
                L = (h1 - h0) * WO
                for co in range(CO):
                    dyb[co, c0 : c0 + L] = dy[n, co, h0 * WO : h1 * WO]
            np.dot(dyb, cols.T, part)
            acc += part


@parallel
def conv_input_grad(dy, wT, geo, nb, cblk, ws, dyws, dx):
    r"""``dx[n, c-block] = col2im(wT[c-block rows] (Rb, CO) @ dY (CO, nb*HO*WO))``.

    A unit is ``nb`` whole samples and a block of ``cblk`` input channels (``nb > 1`` only
    when ``cblk`` covers all channels); each unit owns its slice of ``dx``.
    """
    N, C, H, W = dx.shape
    CO = dy.shape[1]
    KK = geo.kh * geo.kw
    HW = geo.ho * geo.wo
    ngrp = (N + nb - 1) // nb
    nblk = (C + cblk - 1) // cblk
    units = ngrp * nblk
    nchunks = ws.shape[0]
    for ch in prange(nchunks):
        for u in range(ch * units // nchunks, (ch + 1) * units // nchunks):
            n0 = (u // nblk) * nb
            n1 = min(N, n0 + nb)
            c0 = (u % nblk) * cblk
            c1 = min(C, c0 + cblk)
            m = (n1 - n0) * HW
            rb = (c1 - c0) * KK
            if n1 - n0 == 1:
                dyg = dy[n0]
            else:
                dyg = dyws[ch, : CO * m].reshape(CO, m)
                for n in range(n0, n1):
                    for co in range(CO):
                        dyg[co, (n - n0) * HW : (n - n0 + 1) * HW] = dy[n, co]
            dcols = ws[ch, : rb * m].reshape(rb, m)
            np.dot(wT[c0 * KK : c1 * KK], dyg, dcols)
            for n in range(n0, n1):
                col2im_block(ws[ch], m, (n - n0) * HW, c0, c1, geo, H, W, dx[n].reshape(-1))


@parallel
def conv_input_grad_rows(dy, wT, geo, cblk, rows, ws, dx):
    r"""``dx[n, c-block]`` for units of one sample and ``cblk`` input channels, each unit
    taking its output rows ``rows`` at a time: ``dcols = wT[c-block rows] (Rb, CO) @
    dY_n[:, row block] (CO, rows*WO)``, added into ``dx`` by :func:`col2im_rows`.

    For images whose whole-sample ``dcols`` outgrows a core's cache (the 7x7 stem's is
    2.4 MB a channel): a row block's stays in it between the GEMM that writes it and the
    scatter that reads it.  Each unit owns its ``dx[n, c-block]``; its row blocks, which
    overlap in ``dx`` where windows do, run one after another.
    """
    N, C, H, W = dx.shape
    CO = dy.shape[1]
    KK = geo.kh * geo.kw
    HO, WO = geo.ho, geo.wo
    HW = HO * WO
    nblk = (C + cblk - 1) // cblk
    units = N * nblk
    nchunks = ws.shape[0]
    dyf, wf = dy.reshape(-1), wT.reshape(-1)
    for ch in prange(nchunks):
        for u in range(ch * units // nchunks, (ch + 1) * units // nchunks):
            n = u // nblk
            c0 = (u % nblk) * cblk
            c1 = min(C, c0 + cblk)
            dxn = dx[n].reshape(-1)
            dxn[c0 * H * W : c1 * H * W] = 0
            for ho0 in range(0, HO, rows):
                ho1 = min(HO, ho0 + rows)
                L = (ho1 - ho0) * WO
                gemm(False, False, (c1 - c0) * KK, L, CO, wf, c0 * KK * CO, CO,
                     dyf, n * CO * HW + ho0 * WO, HW, 0.0, ws[ch], 0, L)  # fmt: skip
                col2im_rows(ws[ch], L, c0, c1, ho0, ho1, geo, H, W, dxn)


@parallel
def sum_slabs(parts, out):
    """``out[j] = Σ_s parts[s, j]`` (the weight-gradient partials), columns split in blocks.

    At many threads the partial sums are many (one slab per chunk); a serial NumPy sum over
    them would be the one single-threaded pass of the backward.  Each block owns its
    columns of ``out``; slabs are added in chunk order, as ``parts.sum(axis=0)`` does.
    """
    S, J = parts.shape
    nblk = (J + 4095) // 4096
    for blk in prange(nblk):
        j0 = blk * 4096
        j1 = min(J, j0 + 4096)
        for j in range(j0, j1):
            out[j] = parts[0, j]
        for s in range(1, S):
            for j in range(j0, j1):
                out[j] += parts[s, j]
