r"""2-D and 1-D convolution (cross-correlation, as in PyTorch), forward and backward.

Algorithm (chosen by measurement, see ``benchmarks/bench_kernels.py``): work is cut
into units — (sample, block of output rows) for the forward and the weight gradient,
(sample, block of input channels) for the input gradient — and one Numba ``prange`` runs
them; each unit writes its im2col block into its chunk's workspace and calls a
single-threaded BLAS GEMM on it.  One thread pool runs at a time: a multithreaded BLAS
called between Numba's parallel loops made the two pools spin against each other and cost
5-10x on 2 cores.  A 3x3 window at stride 1 with 8-90 channels takes the Winograd
F(2x2, 3x3) path for the output instead (:mod:`._winograd` says when and why).

.. code-block:: text

    # Forward:  y_n[co, p]   = W[co, r] cols_n[r, p]               r = (c, kh, kw), p = (ho, wo)
    # dW:       dW[co, r]    = Σ_n dY_n[co, p] cols_n[r, p]^T       (per-chunk partials, summed)
    # dX:       dcols_n[r, p] = W[co, r]^T dY_n[co, p];  dX_n = col2im(dcols_n)

``col2im`` is the adjoint of ``im2col``; with stride 1 and padding 0 it is the course's
``dX = pad(dY, K-1) ⋆ rot180(W)``, and with stride s it is that rule applied to dY dilated
by s (derivgrad proves both symbolically).
"""

import numba
import numpy as np

from . import (
    _blas,  # noqa: F401  (pins the BLAS that np.dot uses inside kernels to 1 thread)
    _winograd,
)
from . import _validate as v
from ._conv_kernels import (
    conv_forward,
    conv_input_grad,
    conv_input_grad_rows,
    conv_weight_grad,
    sum_slabs,
)
from ._geometry import geometry2d
from ._rowshift_kernels import rowshift_backward, rowshift_forward
from ._types import IntOrPair
from ._window_kernels import channel_sums, column_table
from ._workspace import buffer

# A unit's im2col block: 1 MiB measured best (256 KiB-4 MiB tried, benchmarks/bench_kernels.py).
BLOCK_BYTES = 1 << 20
# At most this many output columns per forward unit: with few rows R (LeNet's conv1 has
# R = 25) a 1 MiB block is 10,000 columns.  One-thread CPU time against PyTorch for conv1's
# forward, capped at 1024 / 2048 / 4096 / uncapped columns: 0.64-0.71 / 1.16-1.37 /
# 0.93-1.36 / 1.08-1.31x; the 7x7 stem 0.48 / 0.47 / 0.46 / 0.53x; conv2 (512) unchanged.
# The weight gradient's units take the same cap: conv1's dW (R = 25) ran 1.09-1.12 ms capped
# at 512-1536 columns against 1.56-1.80 at 2048 or uncapped (1 thread; 0.48-0.52 against
# 0.71-0.77 at 2), paired; conv2 and the stem were unchanged.
MAX_COLUMNS = 1024


def _input_and_weights(op, x, w, ndim, x_layout, w_layout):
    """x and w of rank ``ndim``, one dtype, non-empty, with matching input channels."""
    x = v.float_array(op, "x", x, ndim, x_layout)
    w = v.float_array(op, "w", w, ndim, w_layout)
    v.same_dtype(op, x=x, w=w)
    v.nonempty(op, "x", x)
    v.nonempty(op, "w", w)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"{op}: w must have shape {w_layout} with C_in = {x.shape[1]} "
            f"(the channels of x {x.shape}), got {w.shape}"
        )
    return x, w


def _conv2d_params(op, x, w, stride, padding, dilation):
    x, w = _input_and_weights(op, x, w, 4, "[N, C_in, H, W]", "[C_out, C_in, KH, KW]")
    s = v.pair(op, "stride", stride, 1)
    p = v.pair(op, "padding", padding, 0)
    d = v.pair(op, "dilation", dilation, 1)
    k = w.shape[2:]
    for i, axis in enumerate(("H", "W")):
        v.fits(op, axis, x.shape[2 + i], k[i], s[i], p[i], d[i])
    N, C, H, W = x.shape
    geo = geometry2d(x.shape[2:], k, s, p, d)
    v.addressable(op, (N, C, H + 2 * p[0], W + 2 * p[1]), (N, C * k[0] * k[1], geo.ho, geo.wo))
    return x, w, geo


def _plan(n_items, bytes_per_item, threads):
    """Items per unit and chunk count: a unit's block fits ``BLOCK_BYTES`` and there are at
    least 4 units per thread where the work allows it."""
    per = max(1, min(n_items, BLOCK_BYTES // max(1, bytes_per_item)))
    per = max(1, min(per, -(-n_items // (4 * threads))))
    units = -(-n_items // per)
    return per, max(1, min(units, threads))


# The input gradient of images whose one-sample columns exceed BLOCK_BYTES: output rows
# in blocks of about this many bytes of columns, and whole samples per unit when there
# are at least this many samples a thread (the 7x7 stem: 8 samples, 147 x 784 columns).
DX_ROW_BYTES = 512 << 10
DX_SAMPLE_UNITS = 2

# The row-shift path (:mod:`._rowshift_kernels`) where a row of its gathered matrix is at
# least this long (C_in * KW): each GEMM's inner dimension.  LeNet's conv2 (C_in * KW = 100),
# one-thread CPU time, interleaved, against im2col: forward 3.62 -> 3.03 ms.  conv1
# (C_in * KW = 5) would run GEMMs with an inner dimension of 5; it stays on im2col.
ROWSHIFT_MIN_ROWS = 32
# Its units: whole samples, the gathered block within this many bytes (conv2: 38 KiB a
# sample; 4 / 8 / 16 samples a unit measured 3.19 / 3.03 / 3.20 ms forward, one thread).
ROWSHIFT_BLOCK_BYTES = 320 << 10


def _takes_rowshift(C, geo):
    """Row stride 1 and rows long enough to feed a GEMM; the forward and both gradients
    take it together."""
    return geo.sh == 1 and C * geo.kw >= ROWSHIFT_MIN_ROWS


def _rowshift_plan(N, C, H, geo, itemsize, threads):
    """Samples per unit and chunk count for the row-shift kernels, and the gathered
    block's length (elements) for ``nb`` samples."""
    per_sample = C * geo.kw * (H + 2 * geo.ph) * geo.wo
    nb = max(1, min(N, ROWSHIFT_BLOCK_BYTES // max(1, per_sample * itemsize)))
    nb = max(1, min(nb, -(-N // (4 * threads))))
    units = -(-N // nb)
    return nb, max(1, min(units, threads)), per_sample * nb


def _weights_by_row(w):
    """``wp[kh] = w[:, :, kh, :]`` as ``(CO, C*KW)`` matrices: ``(KH, CO, C*KW)``."""
    CO, C, KH, KW = w.shape
    return np.ascontiguousarray(w.transpose(2, 0, 1, 3)).reshape(KH, CO, C * KW)


def _takes_winograd(C, CO, geo):
    """The forward and both gradients take the Winograd path together; it pads both sides
    alike."""
    return geo.ph == geo.pw and _winograd.applies(C, CO, geo.kernel, geo.stride, geo.dilation)


def _forward(x, w, b, geo):
    N, C, H, W = x.shape
    CO = w.shape[0]
    HO, WO = geo.ho, geo.wo
    bias = b if b is not None else np.zeros(CO, dtype=x.dtype)
    if _takes_winograd(C, CO, geo):
        return _winograd.forward(x, w, bias, geo.ph)
    if _takes_rowshift(C, geo):
        nb, nch, L = _rowshift_plan(N, C, H, geo, x.itemsize, numba.get_num_threads())
        ws = buffer("cols", nch * L, x.dtype).reshape(nch, -1)
        ys = buffer("ymat", nch * CO * HO * nb * WO, x.dtype).reshape(nch, -1)
        y = np.empty((N, CO, HO * WO), dtype=x.dtype)
        rowshift_forward(x, _weights_by_row(w), bias, geo, nb, ws, ys, y)
        return y.reshape(N, CO, HO, WO)
    R = C * geo.kh * geo.kw
    rows, nch = _plan(N * HO, R * WO * x.itemsize, numba.get_num_threads())
    rows = max(1, min(rows, MAX_COLUMNS // WO))
    ws = buffer("cols", nch * R * rows * WO, x.dtype).reshape(nch, -1)
    tmp = buffer("ymat", nch * CO * rows * WO, x.dtype).reshape(nch, -1)
    y = np.empty((N, CO, HO * WO), dtype=x.dtype)
    conv_forward(x, w.reshape(CO, R), bias, geo, column_table(geo, W), rows, ws, tmp, y)
    return y.reshape(N, CO, HO, WO)


def _backward(dy, x, w, geo, need_dx):
    N, C, H, W = x.shape
    CO = w.shape[0]
    HO, WO = geo.ho, geo.wo
    HW = HO * WO
    KK = geo.kh * geo.kw
    R = C * KK
    threads = numba.get_num_threads()
    dy3 = dy.reshape(N, CO, HW)
    # Where the forward takes the Winograd path, so do both gradients.  64-channel 3x3 case,
    # paired runs at 1 / 2 threads: dW 21.4 -> 14.7-15.1 / 12.3 -> 8.5 ms, dX 15.9 -> 12.6 /
    # 8.1 -> 6.7 ms (im2col -> Winograd).
    wino = _takes_winograd(C, CO, geo)
    rowshift = not wino and _takes_rowshift(C, geo)
    dw = _winograd.weight_grad(x, dy, geo.ph) if wino else None
    if rowshift:
        nb, nch, L = _rowshift_plan(N, C, H, geo, x.itemsize, threads)
        ws = buffer("cols", nch * L, x.dtype).reshape(nch, -1)
        dws = buffer("dcols", nch * L if need_dx else 1, x.dtype).reshape(nch if need_dx else 1, -1)
        dyws = buffer("ymat", nch * CO * HO * nb * WO, x.dtype).reshape(nch, -1)
        dwp = np.empty((nch, geo.kh, CO, C * geo.kw), dtype=x.dtype)
        dbp = np.empty((nch, CO), dtype=np.float64)
        dx = np.empty_like(x) if need_dx else np.empty((1, 1, 1, 1), x.dtype)
        wp = _weights_by_row(w)
        rowshift_backward(dy, x, wp, geo, nb, need_dx, ws, dws, dyws, dwp, dbp, dx)
        dws_sum = np.empty(dwp.shape[1:], dtype=x.dtype)
        sum_slabs(dwp.reshape(nch, -1), dws_sum.reshape(-1))
        dw = np.ascontiguousarray(dws_sum.reshape(geo.kh, CO, C, geo.kw).transpose(1, 2, 0, 3))
        return (dx if need_dx else None), dw, dbp.sum(axis=0).astype(x.dtype)
    if dw is None or not np.isfinite(dw).all():
        # im2col's dW; also where a non-finite input made Winograd's non-finite: its
        # transforms spread a value over a tile, the direct sum keeps it to its taps
        rows, nch = _plan(N * HO, R * WO * x.itemsize, threads)
        rows = max(1, min(rows, MAX_COLUMNS // WO))
        ws = buffer("cols", nch * R * rows * WO, x.dtype).reshape(nch, -1)
        dyws = buffer("ymat", nch * CO * rows * WO, x.dtype).reshape(nch, -1)
        dwp = np.empty((nch, CO, R), dtype=x.dtype)
        conv_weight_grad(dy3, x, geo, column_table(geo, W), rows, ws, dyws, dwp)
        dw = np.empty(w.shape, dtype=x.dtype)
        sum_slabs(dwp.reshape(nch, -1), dw.reshape(-1))
    dx = None
    if need_dx and wino and geo.ph <= 2 and np.isfinite(w).all():
        # dX = dY ⋆ rot180(W) with input and output channels swapped, padding 2 - p: the
        # same 3x3 stride-1 convolution, so the forward's Winograd kernel computes it.  Not
        # for a non-finite W: its filter transform spreads the value over every tap, where
        # the direct sum leaves the border entries of dX that the tap never reaches finite.
        wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        dx = _winograd.forward(dy, wf, np.zeros(C, dtype=x.dtype), 2 - geo.ph)
    elif need_dx:
        # Whole samples per unit when one sample's columns are small, else channel blocks.
        nb, nch = _plan(N, R * HW * x.itemsize, threads)
        cblk = C
        if nb == 1:
            # A sample's columns outgrow the cache: its output rows a block at a time.
            # Whole samples per unit where there are enough of them to share.
            if N < DX_SAMPLE_UNITS * threads:
                cblk, _ = _plan(N * C, KK * HW * x.itemsize, threads)
                cblk = min(cblk, C)
            rows = max(1, min(HO, DX_ROW_BYTES // (cblk * KK * WO * x.itemsize)))
            nch = max(1, min(threads, N * -(-C // cblk)))
            ws = buffer("dcols", nch * cblk * KK * rows * WO, x.dtype).reshape(nch, -1)
            wT = np.ascontiguousarray(w.reshape(CO, R).T)
            dx = np.empty_like(x)
            conv_input_grad_rows(dy, wT, geo, cblk, rows, ws, dx)
            return dx, dw, channel_sums(dy3).astype(x.dtype)
        if nb == 1:
            cblk, nch = _plan(N * C, KK * HW * x.itemsize, threads)
            cblk = min(cblk, C)
            nch = max(1, min(threads, N * -(-C // cblk)))
        ws = buffer("dcols", nch * cblk * KK * nb * HW, x.dtype).reshape(nch, -1)
        dyws = buffer("ymat", nch * CO * nb * HW, x.dtype).reshape(nch, -1)
        wT = np.ascontiguousarray(w.reshape(CO, R).T)
        dx = np.empty_like(x)
        conv_input_grad(dy3, wT, geo, nb, cblk, ws, dyws, dx)
    db = channel_sums(dy3).astype(x.dtype)
    return dx, dw, db


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> np.ndarray:
    r"""2-D convolution (cross-correlation) of a batch.

    .. math::
        y_{n,o,i,j} = b_o + \sum_{c,h,l} w_{o,c,h,l}\,
                      x^{pad}_{n,\,c,\,i s_H + h d_H,\,j s_W + l d_W}

    Args:
        x: input ``(N, C_in, H, W)``, float32 or float64.
        w: weights ``(C_out, C_in, KH, KW)``, same dtype as ``x``.
        b: optional bias ``(C_out,)``.
        stride, padding, dilation: a single int or a pair ``(sH, sW)``; stride and dilation
            >= 1, padding >= 0 (zeros on both sides).

    Returns:
        ``y`` of shape ``(N, C_out, H_out, W_out)`` with
        ``H_out = floor((H + 2 pH - dH (KH - 1) - 1) / sH) + 1`` (likewise W), in x's dtype.

    Raises ``TypeError`` for non-float or mixed dtypes and ``ValueError`` for wrong ranks,
    mismatched channels or a dilated window larger than the padded input.  Non-contiguous
    inputs are copied; NaN and inf propagate to every output whose window contains them.
    """
    op = "conv2d_forward"
    x, w, geo = _conv2d_params(op, x, w, stride, padding, dilation)
    if b is not None:
        b = v.vector(op, "b", b, w.shape[0], x.dtype, "[C_out]")
    return _forward(x, w, b, geo)


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    *,
    bias: bool = True,
    need_dx: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    r"""Gradients of a 2-D convolution with respect to its input, weights and bias.

    .. math::
        \frac{\partial L}{\partial w_{o,c,h,l}} = \sum_{n,i,j} \delta_{n,o,i,j}\,
            x^{pad}_{n,c,i s_H + h d_H, j s_W + l d_W}, \qquad
        \frac{\partial L}{\partial b_o} = \sum_{n,i,j} \delta_{n,o,i,j}

    and ``dx`` the adjoint of the forward map: for stride 1, ``pad(dY, K-1) ⋆ rot180(W)``
    summed over output channels, cropped by the padding; for stride s the same with dY
    dilated by s.

    Args:
        dy: upstream gradient ``(N, C_out, H_out, W_out)``; the other arguments as in
            :func:`conv2d_forward`.
        bias: keyword only; ``False`` when the forward had no bias, then ``db`` is ``None``.
        need_dx: keyword only; ``False`` skips the input gradient (a network's first layer).

    Returns:
        ``(dx, dw, db)`` shaped like ``x``, ``w`` and ``(C_out,)``; ``dx`` is ``None`` when
        ``need_dx`` is false.
    """
    op = "conv2d_backward"
    x, w, geo = _conv2d_params(op, x, w, stride, padding, dilation)
    dy = v.float_array(op, "dy", dy, 4, "[N, C_out, H_out, W_out]")
    v.same_dtype(op, x=x, dy=dy)
    v.shape_is(op, "dy", dy, (x.shape[0], w.shape[0], geo.ho, geo.wo), "[N, C_out, H_out, W_out]")
    dx, dw, db = _backward(dy, x, w, geo, need_dx)
    return dx, dw, (db if bias else None)


def _conv1d_params(op, x, w, stride, padding, dilation):
    x, w = _input_and_weights(op, x, w, 3, "[N, C_in, L]", "[C_out, C_in, K]")
    s = v.single(op, "stride", stride, 1)
    p = v.single(op, "padding", padding, 0)
    d = v.single(op, "dilation", dilation, 1)
    v.fits(op, "L", x.shape[2], w.shape[2], s, p, d)
    # A 1-D convolution is the 2-D one on a 1-row image with a 1-row kernel.
    x4, w4 = x[:, :, None, :], w[:, :, None, :]
    return x4, w4, geometry2d(x4.shape[2:], (1, w.shape[2]), (1, s), (0, p), (1, d))


def conv1d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> np.ndarray:
    r"""1-D convolution (cross-correlation) of a batch.

    .. math:: y_{n,o,i} = b_o + \sum_{c,h} w_{o,c,h}\, x^{pad}_{n,c,\,i s + h d}

    Args:
        x: ``(N, C_in, L)``; w: ``(C_out, C_in, K)``; b: optional ``(C_out,)``;
        stride, padding, dilation: an int (or a 1-tuple).

    Returns:
        ``y (N, C_out, L_out)``, ``L_out = floor((L + 2p - d (K - 1) - 1) / s) + 1``.
    """
    op = "conv1d_forward"
    x4, w4, geo = _conv1d_params(op, x, w, stride, padding, dilation)
    if b is not None:
        b = v.vector(op, "b", b, w4.shape[0], x4.dtype, "[C_out]")
    return _forward(x4, w4, b, geo)[:, :, 0, :]


def conv1d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    *,
    bias: bool = True,
    need_dx: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    r"""Gradients of :func:`conv1d_forward`: ``(dx, dw, db)`` shaped like x, w, ``(C_out,)``.

    ``dy`` is ``(N, C_out, L_out)``.  For stride 1 and no padding,
    ``dx = pad(dy, K-1) ⋆ flip(w)`` and ``dw = x ⋆ dy`` (worked problem 6).  Keywords as in
    :func:`conv2d_backward`.
    """
    op = "conv1d_backward"
    x4, w4, geo = _conv1d_params(op, x, w, stride, padding, dilation)
    dy = v.float_array(op, "dy", dy, 3, "[N, C_out, L_out]")
    v.same_dtype(op, x=x4, dy=dy)
    v.shape_is(op, "dy", dy, (x4.shape[0], w4.shape[0], geo.wo), "[N, C_out, L_out]")
    dx, dw, db = _backward(np.ascontiguousarray(dy[:, :, None, :]), x4, w4, geo, need_dx)
    return (None if dx is None else dx[:, :, 0, :]), dw[:, :, 0, :], (db if bias else None)
