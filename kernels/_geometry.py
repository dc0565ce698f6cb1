"""Window geometry: the one place that knows how big a sliding-window output is.

Convolution, pooling, im2col and the symbolic face all call :func:`output_size`.
"""


def output_size(n, k, stride=1, padding=0, dilation=1):
    r"""Number of window positions along one axis.

    .. math:: n_{out} = \left\lfloor \frac{n + 2p - d(k-1) - 1}{s} \right\rfloor + 1

    ``n`` input length, ``k`` window length, ``stride`` s, ``padding`` p (each side),
    ``dilation`` d.  Works on ints and on SymPy integers alike; a result below 1 means the
    window does not fit (callers validate).
    """
    return (n + 2 * padding - window_span(k, dilation)) // stride + 1


def window_span(k, dilation=1):
    """Input positions a (dilated) window covers: ``d(k - 1) + 1``."""
    return dilation * (k - 1) + 1


def output_shape2d(hw, kernel, stride, padding, dilation):
    """``(HO, WO)`` for an ``(H, W)`` input and ``(kh, kw)``-style pairs."""
    return tuple(
        output_size(hw[i], kernel[i], stride[i], padding[i], dilation[i]) for i in range(2)
    )
