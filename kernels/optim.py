r"""Fused optimizer updates (one pass over each parameter, parallel over blocks).

SGD, PyTorch's semantics: ``g ← g + λ p``; ``v ← g`` on the first step, else
``v ← μ v + g``; ``p ← p − lr v`` (``μ = 0``: plain SGD, ``v`` unused).

Adam (PyTorch's, L2 weight decay): ``g ← g + λ p``; ``m ← β₁ m + (1 − β₁) g``;
``v ← β₂ v + (1 − β₂) g²``; ``p ← p − lr · (m / c₁) / (√(v / c₂) + ε)`` with the bias
corrections ``c₁ = 1 − β₁ᵗ``, ``c₂ = 1 − β₂ᵗ``.
"""

import math
import numbers

import numpy as np
from numba import prange

from . import _validate as val
from ._config import parallel
from ._threads import serial_if

_BLOCK = 16384


@parallel
def _sgd(p, g, v, lr, mu, wd, first):
    n = p.size
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        # each block as slices indexed from 0 (Numba then drops its negative-index check and
        # the loop vectorises); the arithmetic is unchanged, so the results are bit for bit
        lo = b * _BLOCK
        k = min(n, lo + _BLOCK) - lo
        ps, gs, vs = p[lo : lo + k], g[lo : lo + k], v[lo : lo + k]
        for i in range(k):
            d = gs[i] + wd * ps[i]
            if mu != 0.0:
                d = d if first else mu * vs[i] + d
                vs[i] = d
            ps[i] -= lr * d


def _real(op, name, value, lo, hi=None, lo_open=False, hi_open=True):
    """A finite float hyper-parameter in [lo, hi) (or (lo, ...) with ``lo_open``)."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    v = float(value)
    low_bad = v <= lo if lo_open else v < lo
    high_bad = hi is not None and (v >= hi if hi_open else v > hi)
    if not math.isfinite(v) or low_bad or high_bad:
        rng = ("(" if lo_open else "[") + f"{lo}, " + ("inf)" if hi is None else f"{hi})")
        raise ValueError(f"{op}: {name} must be finite and in {rng}, got {value!r}")
    return v


def _buffers(op, writable, **arrays):
    """Same-shape, same-dtype, C-contiguous float32/float64 plain ndarrays (subclasses
    viewed as such: the same memory); the names in ``writable`` are updated in place, must
    be writable and may share memory with no other argument.  Returns the arrays."""
    first = None
    arrays = {name: val.plain(op, name, a) for name, a in arrays.items()}
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{op}: {name} must be a NumPy array, got {type(a).__name__}")
        if a.dtype not in val.FLOAT_DTYPES:
            raise TypeError(
                f"{op}: {name} must be a float32 or float64 array, got dtype {a.dtype} "
                f"(no silent cast: an update in another dtype would be truncated or lost)"
            )
        if not a.flags.c_contiguous:
            raise ValueError(f"{op}: {name} must be C-contiguous (it is updated in place)")
        if name in writable and not a.flags.writeable:
            raise ValueError(f"{op}: {name} is read-only but is updated in place")
        if first is None:
            first = name, a
        else:
            val.shape_is(op, name, a, first[1].shape, f"{first[0]}.shape")
    val.same_dtype(op, **arrays)
    val.no_alias(op, writable, **arrays)
    return arrays.values()


def sgd_update(
    p: np.ndarray,
    g: np.ndarray,
    v: np.ndarray,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    first: bool = False,
) -> None:
    """Update ``p`` (and the momentum buffer ``v``) in place; all three share shape and dtype.

    ``lr``, ``momentum`` and ``weight_decay`` are finite and >= 0; ``first`` is a bool."""
    op = "sgd_update"
    lr = _real(op, "lr", lr, 0.0)
    momentum = _real(op, "momentum", momentum, 0.0)
    if momentum:
        p, g, v = _buffers(op, ("p", "v"), p=p, g=g, v=v)
    else:  # plain SGD neither reads nor writes v: it may be any same-shape array, even p
        p, g = _buffers(op, ("p",), p=p, g=g)
        v = val.plain(op, "v", v)
        _buffers(op, (), p=p, v=v)
    weight_decay = _real(op, "weight_decay", weight_decay, 0.0)
    if not isinstance(first, (bool, np.bool_)):
        raise TypeError(f"{op}: first must be a bool, got {first!r}")
    with serial_if(nbytes=3 * p.nbytes):
        _sgd(p.reshape(-1), g.reshape(-1), v.reshape(-1), lr, momentum, weight_decay, bool(first))


@parallel
def _adam(p, g, m, v, lr, b1, b2, eps, wd, c1, c2):
    n = p.size
    for blk in prange((n + _BLOCK - 1) // _BLOCK):
        lo = blk * _BLOCK  # slices from 0: see _sgd
        k = min(n, lo + _BLOCK) - lo
        ps, gs, ms, vs = p[lo : lo + k], g[lo : lo + k], m[lo : lo + k], v[lo : lo + k]
        for i in range(k):
            d = gs[i] + wd * ps[i]
            ms[i] = b1 * ms[i] + (1.0 - b1) * d
            vs[i] = b2 * vs[i] + (1.0 - b2) * d * d
            ps[i] -= lr * (ms[i] / c1) / (np.sqrt(vs[i] / c2) + eps)


def adam_update(
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    step: int = 1,
) -> None:
    """Update ``p`` and the moment buffers ``m``, ``v`` in place; ``step`` counts from 1.

    ``betas`` are two finite numbers in [0, 1) (β = 1 would divide by a zero bias
    correction), ``eps`` > 0, ``lr`` and ``weight_decay`` finite and >= 0."""
    op = "adam_update"
    p, g, m, v = _buffers(op, ("p", "m", "v"), p=p, g=g, m=m, v=v)
    step = val.int_param(op, "step", step, 1, maximum=None)  # only b**step uses it
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{op}: betas must be a pair (beta1, beta2), got {betas!r}")
    b1 = _real(op, "betas[0]", betas[0], 0.0, 1.0)
    b2 = _real(op, "betas[1]", betas[1], 0.0, 1.0)
    eps = _real(op, "eps", eps, 0.0, lo_open=True)
    lr = _real(op, "lr", lr, 0.0)
    weight_decay = _real(op, "weight_decay", weight_decay, 0.0)
    c1, c2 = 1.0 - b1**step, 1.0 - b2**step
    if c1 == 0.0 or c2 == 0.0:  # b**step rounds to 1 only for b within an ulp of 1
        raise ValueError(f"{op}: betas {betas!r} too close to 1 for step {step}")
    with serial_if(nbytes=4 * p.nbytes):
        _adam(
            p.reshape(-1),
            g.reshape(-1),
            m.reshape(-1),
            v.reshape(-1),
            lr,
            b1,
            b2,
            eps,
            weight_decay,
            c1,
            c2,
        )
