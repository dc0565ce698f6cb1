r"""Fully connected layer ``y = x W^T + b``.

The work is three GEMMs, each split into row blocks run by Numba's ``prange`` with a
single-threaded BLAS call per block (see ``_linear_kernels``); the bias sum is a parallel
column reduction.

.. code-block:: text

    # Forward: [N, in] [in, out] -> [N, out]        y  = x W^T + b
    # dx:      [N, out] [out, in] -> [N, in]        dx = dy W
    # dW:      [out, N] [N, in]  -> [out, in]       dW = dy^T x      (sums over the batch)
"""

import numba
import numpy as np

from . import _blas  # noqa: F401  (pins the BLAS that np.dot uses inside kernels to 1 thread)
from . import _validate as v
from ._linear_kernels import column_sums, linear_fwd, rows_matmul


def _blocks(rows):
    return max(1, min(rows, numba.get_num_threads()))


def _params(op, x, w):
    x = v.float_array(op, "x", x, 2, "[N, in_features]")
    w = v.float_array(op, "w", w, 2, "[out_features, in_features]")
    v.same_dtype(op, x=x, w=w)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"{op}: w must have shape [out_features, in_features] with in_features = "
            f"{x.shape[1]} (from x {x.shape}), got {w.shape}"
        )
    return x, w


def linear_forward(x, w, b=None):
    r"""``y = x W^T + b``: x ``(N, in_features)``, w ``(out_features, in_features)``,
    b optional ``(out_features,)``; returns ``y (N, out_features)`` in x's dtype."""
    op = "linear_forward"
    x, w = _params(op, x, w)
    if b is not None:
        b = v.vector(op, "b", b, w.shape[0], x.dtype, "[out_features]")
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)
    if y.size:
        linear_fwd(x, w, b if b is not None else w[0], b is not None, _blocks(x.shape[0]), y)
    return y


def linear_backward(dy, x, w, *, bias=True, need_dx=True):
    r"""Gradients of :func:`linear_forward`.

    ``dy (N, out_features)`` → ``(dx, dw, db)``: ``dx = dy W`` ``(N, in)``,
    ``dw = dy^T x`` ``(out, in)``, ``db = Σ_n dy`` ``(out,)`` (``None`` if ``bias=False``);
    ``dx`` is ``None`` if ``need_dx=False``.
    """
    op = "linear_backward"
    x, w = _params(op, x, w)
    dy = v.float_array(op, "dy", dy, 2, "[N, out_features]")
    v.same_dtype(op, x=x, dy=dy)
    v.shape_is(op, "dy", dy, (x.shape[0], w.shape[0]), "[N, out_features]")
    dx = None
    if need_dx:
        dx = np.empty_like(x)
        rows_matmul(dy, w, _blocks(dy.shape[0]), dx)
    # dW = dyᵀ x, split over the rows of dW (the output features): each block owns its rows
    dyT = np.ascontiguousarray(dy.T)
    dw = np.empty_like(w)
    rows_matmul(dyT, x, _blocks(dyT.shape[0]), dw)
    db = column_sums(dy, _blocks(dy.shape[1])).astype(dy.dtype) if bias else None
    return dx, dw, db
