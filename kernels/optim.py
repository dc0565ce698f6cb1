r"""Fused optimizer updates (one pass over each parameter, parallel over blocks).

SGD, PyTorch's semantics: ``g ← g + λ p``; ``v ← g`` on the first step, else
``v ← μ v + g``; ``p ← p − lr v`` (``μ = 0``: plain SGD, ``v`` unused).

Adam (PyTorch's, L2 weight decay): ``g ← g + λ p``; ``m ← β₁ m + (1 − β₁) g``;
``v ← β₂ v + (1 − β₂) g²``; ``p ← p − lr · (m / c₁) / (√(v / c₂) + ε)`` with the bias
corrections ``c₁ = 1 − β₁ᵗ``, ``c₂ = 1 − β₂ᵗ``.
"""

import numpy as np
from numba import prange

from . import _validate as val
from ._config import parallel

_BLOCK = 16384


@parallel
def _sgd(p, g, v, lr, mu, wd, first):
    n = p.size
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        for i in range(b * _BLOCK, min(n, (b + 1) * _BLOCK)):
            d = g[i] + wd * p[i]
            if mu != 0.0:
                d = d if first else mu * v[i] + d
                v[i] = d
            p[i] -= lr * d


def sgd_update(p, g, v, lr, momentum=0.0, weight_decay=0.0, first=False):
    """Update ``p`` (and the momentum buffer ``v``) in place; all three share shape and dtype."""
    op = "sgd_update"
    for name, a in (("p", p), ("g", g), ("v", v)):
        if (
            not isinstance(a, np.ndarray)
            or not a.flags.c_contiguous
            or not a.flags.writeable
            and name != "g"
        ):
            raise ValueError(f"{op}: {name} must be a writable C-contiguous ndarray")
        val.shape_is(op, name, a, p.shape, "p.shape")
    val.same_dtype(op, p=p, g=g, v=v)
    _sgd(
        p.reshape(-1),
        g.reshape(-1),
        v.reshape(-1),
        float(lr),
        float(momentum),
        float(weight_decay),
        bool(first),
    )


@parallel
def _adam(p, g, m, v, lr, b1, b2, eps, wd, c1, c2):
    n = p.size
    for blk in prange((n + _BLOCK - 1) // _BLOCK):
        for i in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            d = g[i] + wd * p[i]
            m[i] = b1 * m[i] + (1.0 - b1) * d
            v[i] = b2 * v[i] + (1.0 - b2) * d * d
            p[i] -= lr * (m[i] / c1) / (np.sqrt(v[i] / c2) + eps)


def adam_update(p, g, m, v, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, step=1):
    """Update ``p`` and the moment buffers ``m``, ``v`` in place; ``step`` counts from 1."""
    op = "adam_update"
    for name, a in (("p", p), ("g", g), ("m", m), ("v", v)):
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
            raise ValueError(f"{op}: {name} must be a C-contiguous ndarray")
        val.shape_is(op, name, a, p.shape, "p.shape")
    val.same_dtype(op, p=p, g=g, m=m, v=v)
    step = val.int_param(op, "step", step, 1)
    b1, b2 = betas
    _adam(
        p.reshape(-1),
        g.reshape(-1),
        m.reshape(-1),
        v.reshape(-1),
        float(lr),
        float(b1),
        float(b2),
        float(eps),
        float(weight_decay),
        1.0 - b1**step,
        1.0 - b2**step,
    )
