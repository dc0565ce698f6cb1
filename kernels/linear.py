r"""Fully connected layer ``y = x W^T + b``.

The work is three GEMMs, done by NumPy's BLAS (multithreaded, tuned per CPU): no loop we
could write in Numba beats it, and the prototype's LeNet step was bounded by this GEMM.

.. code-block:: text

    # Forward: [N, in] [in, out] -> [N, out]        y  = x W^T + b
    # dx:      [N, out] [out, in] -> [N, in]        dx = dy W
    # dW:      [out, N] [N, in]  -> [out, in]       dW = dy^T x      (sums over the batch)
"""

from . import _validate as v


def _params(op, x, w):
    x = v.float_array(op, "x", x, 2, "[N, in_features]")
    w = v.float_array(op, "w", w, 2, "[out_features, in_features]")
    v.same_dtype(op, x=x, w=w)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"{op}: w must have shape [out_features, in_features] with in_features = "
                         f"{x.shape[1]} (from x {x.shape}), got {w.shape}")
    return x, w


def linear_forward(x, w, b=None):
    r"""``y = x W^T + b``: x ``(N, in_features)``, w ``(out_features, in_features)``,
    b optional ``(out_features,)``; returns ``y (N, out_features)`` in x's dtype."""
    op = "linear_forward"
    x, w = _params(op, x, w)
    y = x @ w.T
    if b is not None:
        b = v.float_array(op, "b", b, 1, "[out_features]")
        v.same_dtype(op, x=x, b=b)
        v.shape_is(op, "b", b, (w.shape[0],), "[out_features]")
        y += b
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
    dx = dy @ w if need_dx else None
    dw = dy.T @ x
    db = dy.sum(axis=0, dtype=float).astype(dy.dtype) if bias else None
    return dx, dw, db
