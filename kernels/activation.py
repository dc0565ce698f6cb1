r"""ReLU, softmax and softmax cross-entropy.

ReLU's derivative at the kink is taken as 0: ``relu'(x) = 1[x > 0]``.  relu(NaN) = NaN and
its gradient there is 0 (as PyTorch's ``threshold_backward``).  Softmax subtracts the row
maximum before exponentiating, so large logits do not overflow; a row that is all ``-inf``
or contains NaN gives NaN.
"""

import numpy as np

from . import _validate as v
from ._activation_kernels import (
    relu_bwd,
    relu_fwd,
    softmax_rows,
    softmax_xent_grad,
    softmax_xent_rows,
)
from ._threads import serial_if


def _any_rank(op, name, x):
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    return v.float_array(op, name, x, x.ndim)


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``y = max(x, 0)`` elementwise, any shape, float32/float64."""
    x = _any_rank("relu_forward", "x", x)
    y = np.empty_like(x)
    with serial_if(nbytes=2 * x.nbytes):
        relu_fwd(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""``dx = dy ⊙ 1[x > 0]``; dy and x share shape and dtype."""
    op = "relu_backward"
    x = _any_rank(op, "x", x)
    dy = _any_rank(op, "dy", dy)
    v.same_dtype(op, x=x, dy=dy)
    v.shape_is(op, "dy", dy, x.shape, "x.shape")
    dx = np.empty_like(x)
    with serial_if(nbytes=3 * x.nbytes):
        relu_bwd(dy.reshape(-1), x.reshape(-1), dx.reshape(-1))
    return dx


def softmax(z: np.ndarray) -> np.ndarray:
    r"""``p_i = e^{z_i} / Σ_j e^{z_j}`` over the last axis of ``z`` (any rank >= 1), stable."""
    op = "softmax"
    z = _any_rank(op, "z", z)
    if z.ndim == 0:
        raise ValueError(f"{op}: z must have at least one axis, got a scalar")
    v.nonempty(op, "z", z)
    p = np.empty_like(z)
    with serial_if(nbytes=2 * z.nbytes):
        softmax_rows(z.reshape(-1, z.shape[-1]), p.reshape(-1, z.shape[-1]))
    return p


def _xent_params(op, name, a, labels):
    a = v.float_array(op, name, a, 2, "[N, classes]")
    v.nonempty(op, name, a)
    labels = v.labels_array(op, labels, a.shape[0], a.shape[1])
    return a, labels


def softmax_cross_entropy_forward(
    logits: np.ndarray, labels: np.ndarray
) -> tuple[float, np.ndarray]:
    r"""Mean cross-entropy of softmax probabilities.

    .. math:: L = \frac{1}{N} \sum_n \Big(\log \sum_j e^{z_{n,j}} - z_{n, y_n}\Big)

    Args:
        logits: ``(N, classes)`` float32/float64; labels: integers ``(N,)`` in ``[0, classes)``.

    Returns ``(loss, probs)``: the loss as a Python float (summed in float64) and the
    softmax probabilities ``(N, classes)`` in the logits' dtype, which the backward takes.
    """
    op = "softmax_cross_entropy_forward"
    z, labels = _xent_params(op, "logits", logits, labels)
    p = np.empty_like(z)
    losses = np.empty(z.shape[0], dtype=np.float64)
    with serial_if(nbytes=2 * z.nbytes):
        softmax_xent_rows(z, labels, p, losses)
    return float(losses.mean()), p


def softmax_cross_entropy_backward(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    r"""``dL/dz = (p - e_y) / N`` for the mean loss; every row sums to zero.

    Args: probs ``(N, classes)`` from the forward, labels ``(N,)``.  Returns ``dlogits``.
    """
    op = "softmax_cross_entropy_backward"
    p, labels = _xent_params(op, "probs", probs, labels)
    dz = np.empty_like(p)
    with serial_if(nbytes=2 * p.nbytes):
        softmax_xent_grad(p, labels, 1.0 / p.shape[0], dz)
    return dz
