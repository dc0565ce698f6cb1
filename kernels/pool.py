r"""Max and average pooling over ``(N, C, H, W)``, forward and backward.

Conventions (PyTorch's): ``stride`` defaults to ``kernel_size``; padding is at most half
the window on each axis; output sizes round down,
``H_out = floor((H + 2 pH - KH) / sH) + 1``.  Max pooling treats padding as -inf and routes
the gradient to the *first* maximum of a window in row-major order.  Average pooling
divides by the full window ``KH*KW``, padded zeros included (``count_include_pad=True``).
"""

import numpy as np

from . import _validate as v
from ._geometry import output_shape2d
from ._pool_kernels import avgpool_bwd, avgpool_fwd, maxpool2x2_fwd, maxpool_bwd, maxpool_fwd
from ._threads import serial_if
from ._types import IntOrPair


def _params(op, input_shape, kernel_size, stride, padding):
    k = v.pair(op, "kernel_size", kernel_size, 1)
    s = k if stride is None else v.pair(op, "stride", stride, 1)
    p = v.pair(op, "padding", padding, 0)
    for i, axis in enumerate(("H", "W")):
        if 2 * p[i] > k[i]:
            raise ValueError(
                f"{op}: padding along {axis} must be at most half the kernel "
                f"({k[i]} // 2 = {k[i] // 2}), got {p[i]}"
            )
        v.fits(op, axis, input_shape[2 + i], k[i], s[i], p[i], 1)
    out = output_shape2d(input_shape[2:], k, s, p, (1, 1))
    v.addressable(op, (*input_shape[:2], *out))
    return k, s, p, out


def _input_shape(op, input_shape):
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4:
        raise ValueError(f"{op}: input_shape must be (N, C, H, W), got {input_shape!r}")
    return v.shape_ints(op, "input_shape", input_shape)


def maxpool2d_forward(
    x: np.ndarray, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0
) -> tuple[np.ndarray, np.ndarray]:
    r"""Max pooling: ``y[n,c,i,j] = max over the window of x_pad`` (padding = -inf).

    Args:
        x: ``(N, C, H, W)`` float32/float64.  kernel_size, stride, padding: an int or a pair;
        stride defaults to kernel_size; ``padding <= kernel_size // 2``.

    Returns:
        ``(y, indices)``: ``y (N, C, H_out, W_out)`` in x's dtype and int64 ``indices`` of the
        same shape holding the flat position ``ih*W + iw`` of each window's first maximum in
        its ``(H, W)`` plane (as PyTorch's ``return_indices``).  A window containing NaN
        yields NaN and points at its first NaN.
    """
    op = "maxpool2d_forward"
    x = v.float_array(op, "x", x, 4, "[N, C, H, W]")
    v.nonempty(op, "x", x)
    k, s, p, (HO, WO) = _params(op, x.shape, kernel_size, stride, padding)
    y = np.empty(x.shape[:2] + (HO, WO), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int64)
    with serial_if(nbytes=x.nbytes + y.nbytes + idx.nbytes):
        if k == (2, 2) and s == (2, 2) and p == (0, 0):
            maxpool2x2_fwd(x, y, idx)
        else:
            maxpool_fwd(x, k[0], k[1], s[0], s[1], p[0], p[1], y, idx)
    return y, idx


def maxpool2d_backward(
    dy: np.ndarray, indices: np.ndarray, input_shape: tuple[int, ...]
) -> np.ndarray:
    r"""Route each ``dy[n,c,i,j]`` to ``indices[n,c,i,j]`` of its plane; positions that
    win several (overlapping) windows receive the sum.

    Args:
        dy: ``(N, C, H_out, W_out)``; indices: the integer array of the forward, same shape,
        values in ``[0, H*W)``; input_shape: ``(N, C, H, W)``.

    Returns ``dx`` of ``input_shape`` in dy's dtype.
    """
    op = "maxpool2d_backward"
    dy = v.float_array(op, "dy", dy, 4, "[N, C, H_out, W_out]")
    N, C, H, W = _input_shape(op, input_shape)
    indices = v.plain(op, "indices", indices)
    if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: indices must be the integer array returned by maxpool2d_forward, "
            f"got {type(indices).__name__} {getattr(indices, 'dtype', '')}"
        )
    v.shape_is(op, "indices", indices, dy.shape, "dy.shape")
    if dy.shape[:2] != (N, C):
        raise ValueError(
            f"{op}: dy must have shape [N, C, H_out, W_out] with (N, C) = {(N, C)} "
            f"from input_shape, got {dy.shape}"
        )
    idx = np.ascontiguousarray(indices, dtype=np.int64)
    dx = np.empty((N, C, H, W), dtype=dy.dtype)
    bad = np.empty(N * C, dtype=np.int64)
    with serial_if(nbytes=dx.nbytes + dy.nbytes + idx.nbytes):
        maxpool_bwd(dy, idx, dx, bad)  # follows only indices inside [0, H*W), counts the rest
    if bad.any():
        raise ValueError(
            f"{op}: indices must lie in [0, H*W) = [0, {H * W}) for input_shape "
            f"{(N, C, H, W)}, found values in [{indices.min()}, {indices.max()}]"
        )
    return dx


def avgpool2d_forward(
    x: np.ndarray, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0
) -> np.ndarray:
    r"""Average pooling: ``y[n,c,i,j] = (1 / (KH KW)) Σ_window x_pad`` (padded zeros count).

    Args as :func:`maxpool2d_forward`.  Returns ``y (N, C, H_out, W_out)``.
    """
    op = "avgpool2d_forward"
    x = v.float_array(op, "x", x, 4, "[N, C, H, W]")
    v.nonempty(op, "x", x)
    k, s, p, (HO, WO) = _params(op, x.shape, kernel_size, stride, padding)
    y = np.empty(x.shape[:2] + (HO, WO), dtype=x.dtype)
    with serial_if(nbytes=x.nbytes + y.nbytes):
        avgpool_fwd(x, k[0], k[1], s[0], s[1], p[0], p[1], y)
    return y


def avgpool2d_backward(
    dy: np.ndarray,
    input_shape: tuple[int, ...],
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> np.ndarray:
    r"""Spread each ``dy[n,c,i,j] / (KH KW)`` over its window (entries in the padding are
    dropped).  For ``K = S`` and no padding this is dY upsampled by K, divided by K².

    Returns ``dx`` of ``input_shape = (N, C, H, W)`` in dy's dtype.
    """
    op = "avgpool2d_backward"
    dy = v.float_array(op, "dy", dy, 4, "[N, C, H_out, W_out]")
    shape = _input_shape(op, input_shape)
    k, s, p, (HO, WO) = _params(op, shape, kernel_size, stride, padding)
    v.shape_is(op, "dy", dy, shape[:2] + (HO, WO), "[N, C, H_out, W_out]")
    dx = np.empty(shape, dtype=dy.dtype)
    with serial_if(nbytes=dx.nbytes + dy.nbytes):
        avgpool_bwd(dy, k[0], k[1], s[0], s[1], p[0], p[1], dx)
    return dx
