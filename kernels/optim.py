r"""Fused optimizer updates (one pass over each parameter, parallel over blocks).

SGD, PyTorch's semantics: ``g ← g + λ p``; ``v ← g`` on the first step, else
``v ← μ v + g``; ``p ← p − lr v`` (``μ = 0``: plain SGD, ``v`` unused).
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
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or not a.flags.writeable and name != "g":
            raise ValueError(f"{op}: {name} must be a writable C-contiguous ndarray")
        val.shape_is(op, name, a, p.shape, "p.shape")
    val.same_dtype(op, p=p, g=g, v=v)
    _sgd(p.reshape(-1), g.reshape(-1), v.reshape(-1), float(lr), float(momentum), float(weight_decay), bool(first))
