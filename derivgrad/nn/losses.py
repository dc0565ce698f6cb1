"""The losses: each returns ``(loss, dL/d output)`` from the kernels of its op."""

from __future__ import annotations

import numpy as np

from derivgrad import kernels as K


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``softmax(logits)`` against integer ``labels``, its gradient."""
    loss, probs = K.softmax_cross_entropy_forward(logits, labels)
    return float(loss), K.softmax_cross_entropy_backward(probs, labels)


def squared_error(output: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """``sum (output - target)^2`` (the squared-error op's convention), its gradient."""
    from ..ops.squared_error import squared_error_backward, squared_error_forward

    return squared_error_forward(output, target), squared_error_backward(output, target)
