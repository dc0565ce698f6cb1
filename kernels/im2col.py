"""im2col / col2im in the layout of ``torch.nn.functional.unfold`` / ``fold``."""

import numpy as np

from . import _validate as v
from ._geometry import geometry2d, output_shape2d
from ._types import IntOrPair
from ._window_kernels import col2im_all, column_table, im2col_all


def _window_params(op, input_shape, kernel_size, stride, padding, dilation):
    input_hw = input_shape[2:]
    k = v.pair(op, "kernel_size", kernel_size, 1)
    s = v.pair(op, "stride", stride, 1)
    p = v.pair(op, "padding", padding, 0)
    d = v.pair(op, "dilation", dilation, 1)
    for i, axis in enumerate(("H", "W")):
        v.fits(op, axis, input_hw[i], k[i], s[i], p[i], d[i])
    HO, WO = output_shape2d(input_hw, k, s, p, d)
    N, C = input_shape[:2]
    v.addressable(op, (N, C * k[0] * k[1], HO, WO))
    return k, s, p, d, (HO, WO)


def im2col(
    x: np.ndarray,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> np.ndarray:
    """Unfold sliding windows of ``x (N, C, H, W)`` into columns.

    Returns ``cols (N, C*KH*KW, H_out*W_out)``: row ``(c, kh, kw)`` (in that order), column
    ``(ho, wo)`` holds ``x_pad[n, c, ho*sH + kh*dH, wo*sW + kw*dW]``, zero in the padding.
    ``H_out = floor((H + 2 pH - dH (KH - 1) - 1) / sH) + 1``, likewise W.
    """
    op = "im2col"
    x = v.float_array(op, "x", x, 4, "[N, C, H, W]")
    v.nonempty(op, "x", x)
    k, s, p, d, (HO, WO) = _window_params(op, x.shape, kernel_size, stride, padding, dilation)
    N, C = x.shape[:2]
    R, HW = C * k[0] * k[1], HO * WO
    out = np.empty((N, R, HW), dtype=x.dtype)
    geo = geometry2d(x.shape[2:], k, s, p, d)
    im2col_all(x, geo, column_table(geo, x.shape[3]), out)
    return out


def col2im(
    cols: np.ndarray,
    input_shape: tuple[int, ...],
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
) -> np.ndarray:
    """Adjoint of :func:`im2col` (``torch.nn.functional.fold``): sum columns into an image.

    ``cols (N, C*KH*KW, H_out*W_out)`` → ``x (N, C, H, W)`` with ``input_shape = (N, C, H, W)``;
    entries that fall in the padding are dropped, overlapping windows add up.
    """
    op = "col2im"
    cols = v.float_array(op, "cols", cols, 3, "[N, C*KH*KW, H_out*W_out]")
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4:
        raise ValueError(f"{op}: input_shape must be (N, C, H, W), got {input_shape!r}")
    N, C, H, W = v.shape_ints(op, "input_shape", input_shape)
    k, s, p, d, (HO, WO) = _window_params(op, (N, C, H, W), kernel_size, stride, padding, dilation)
    R, HW = C * k[0] * k[1], HO * WO
    v.shape_is(op, "cols", cols, (N, R, HW), "[N, C*KH*KW, H_out*W_out]")
    dx = np.empty((N, C, H, W), dtype=cols.dtype)
    col2im_all(cols, geometry2d((H, W), k, s, p, d), dx)
    return dx
