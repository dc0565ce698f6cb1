r"""Batch normalisation over the channels of ``(N, C, H, W)``.

Statistics are per channel over ``(N, H, W)``: the fully connected batch norm applied to
x reshaped to ``(N*H*W, C)`` (worked problem 11).  Training normalises with the biased
batch variance and updates ``running_var`` with the unbiased one, as PyTorch does:

.. math::
    \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}},\quad y = \gamma \hat x + \beta,\quad
    \frac{\partial L}{\partial x} = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}
        \Big(\delta - \overline{\delta} - \hat x\, \overline{\delta \hat x}\Big)

with bars the means over a channel's ``M = N H W`` entries.
"""

from typing import NamedTuple

import numpy as np

from . import _validate as v
from ._batchnorm_kernels import channel_moments, grad_sums, input_grad, normalize


class BatchNormCache(NamedTuple):
    """What the backward needs: ``xhat (N, C, H, W)``, ``invstd (C,)`` (float64),
    ``gamma (C,)`` and whether the statistics came from the batch (``training``)."""

    xhat: np.ndarray
    invstd: np.ndarray
    gamma: np.ndarray
    training: bool


def _channel_vector(op, name, a, C, dtype, writable=False):
    a = v.float_array(op, name, a, 1, "[C]") if not writable else v.plain(op, name, a)
    if writable:
        if not isinstance(a, np.ndarray) or a.ndim != 1:
            raise TypeError(
                f"{op}: {name} must be a 1-D float ndarray of shape [C] = ({C},) that is "
                f"updated in place, got {type(a).__name__} {getattr(a, 'shape', '')}"
            )
        if not a.flags.writeable:
            raise ValueError(f"{op}: {name} is read-only but training updates it in place")
    v.shape_is(op, name, a, (C,), "[C]")
    if a.dtype != dtype:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but x has dtype {dtype}")
    return a


def batchnorm2d_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float = 1e-5,
    training: bool = True,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
    momentum: float = 0.1,
) -> tuple[np.ndarray, BatchNormCache]:
    r"""Batch norm of ``x (N, C, H, W)`` with per-channel ``gamma``, ``beta`` ``(C,)``.

    Training (``training=True``) uses the batch statistics and, when ``running_mean`` and
    ``running_var`` are given, updates them **in place**:
    ``r ← (1 - momentum) r + momentum · stat``, with the unbiased variance
    ``σ² M / (M - 1)``.  Evaluation (``training=False``) normalises with the running
    statistics, which are then required.

    Returns ``(y, cache)``: ``y`` like x, and a :class:`BatchNormCache` for the backward.
    Raises ``ValueError`` if training sees a single value per channel (``N*H*W == 1``), where
    the variance is undefined, or ``eps``/``momentum`` outside their ranges.
    """
    op = "batchnorm2d_forward"
    x = v.float_array(op, "x", x, 4, "[N, C, H, W]")
    v.nonempty(op, "x", x)
    N, C, H, W = x.shape
    gamma = _channel_vector(op, "gamma", gamma, C, x.dtype)
    beta = _channel_vector(op, "beta", beta, C, x.dtype)
    _check_scalars(op, eps, momentum, training)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{op}: give both running_mean and running_var or neither")
    x3 = x.reshape(N, C, H * W)
    M = N * H * W
    if training:
        if M < 2:
            raise ValueError(
                f"{op}: training needs more than one value per channel, got x of shape "
                f"{x.shape} (N*H*W = {M})"
            )
        mean, var = channel_moments(x3)
        if running_mean is not None and running_var is not None:
            rm = _channel_vector(op, "running_mean", running_mean, C, x.dtype, writable=True)
            rv = _channel_vector(op, "running_var", running_var, C, x.dtype, writable=True)
            v.no_alias(
                op,
                ("running_mean", "running_var"),
                x=x,
                gamma=gamma,
                beta=beta,
                running_mean=rm,
                running_var=rv,
            )
            # in place, as PyTorch: the running variance tracks the unbiased estimate
            rm *= 1 - momentum
            rm += (momentum * mean).astype(x.dtype)
            rv *= 1 - momentum
            rv += (momentum * var * (M / (M - 1))).astype(x.dtype)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                f"{op}: evaluation (training=False) needs running_mean and running_var"
            )
        mean = _channel_vector(op, "running_mean", running_mean, C, x.dtype).astype(np.float64)
        var = _channel_vector(op, "running_var", running_var, C, x.dtype).astype(np.float64)
        if np.any(var + eps <= 0):
            raise ValueError(f"{op}: running_var + eps must be positive, got min {var.min() + eps}")
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = np.empty_like(x3)
    y = np.empty_like(x3)
    normalize(x3, mean, invstd, gamma, beta, xhat, y)
    return y.reshape(x.shape), BatchNormCache(xhat.reshape(x.shape), invstd, gamma, bool(training))


def _check_scalars(op: str, eps: float, momentum: float, training: bool) -> None:
    for name, val, lo, hi in (("eps", eps, 0.0, np.inf), ("momentum", momentum, 0.0, 1.0)):
        if (
            isinstance(val, bool)
            or not isinstance(val, (int, float, np.floating, np.integer))
            or not np.isfinite(val)
            or not (lo < val <= hi if name == "eps" else lo <= val <= hi)
        ):
            raise ValueError(
                f"{op}: {name} must be a finite number in "
                f"{'(0, inf)' if name == 'eps' else '[0, 1]'}, got {val!r}"
            )
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"{op}: training must be a bool, got {training!r}")


def batchnorm2d_backward(
    dy: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`batchnorm2d_forward`: ``(dx, dgamma, dbeta)``.

    ``dgamma = Σ dy ⊙ x̂`` and ``dbeta = Σ dy`` over ``(N, H, W)``; ``dx`` by the formula in
    the module docstring (training) or ``γ σ⁻¹ dy`` (evaluation, statistics constant).
    """
    op = "batchnorm2d_backward"
    if not isinstance(cache, BatchNormCache):
        raise TypeError(
            f"{op}: cache must be the BatchNormCache returned by batchnorm2d_forward, "
            f"got {type(cache).__name__}"
        )
    dy = v.float_array(op, "dy", dy, 4, "[N, C, H, W]")
    v.shape_is(op, "dy", dy, cache.xhat.shape, "the forward's x.shape")
    v.same_dtype(op, dy=dy, xhat=cache.xhat)
    N, C, H, W = dy.shape
    dy3 = dy.reshape(N, C, H * W)
    xhat3 = cache.xhat.reshape(N, C, H * W)
    sdy, sdyx = grad_sums(dy3, xhat3)
    dx = np.empty_like(dy3)
    input_grad(dy3, xhat3, cache.gamma, cache.invstd, sdy, sdyx, cache.training, dx)
    return dx.reshape(dy.shape), sdyx.astype(dy.dtype), sdy.astype(dy.dtype)
