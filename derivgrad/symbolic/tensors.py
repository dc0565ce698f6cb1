"""Symbol tensors and the array operations the derivations are written in.

Tensors are NumPy object arrays of SymPy expressions while a derivation is built (so that
padding, flipping, dilation and slicing read like NumPy), and become ``sympy.Array`` at the
end.  Display names are 1-based, as in the course notes: ``x[0, 1]`` is the symbol
``x_{1,2}``.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy as sp

from .gcpause import paused

ZERO = sp.Integer(0)


def times(a: Any, b: Any) -> Any:
    """``a * b``.  Two distinct plain symbols (commutative, the case of every product a
    convolution or a chain rule writes) become their ``Mul`` directly: exactly the expression
    SymPy's ``Mul.flatten`` builds (the two factors in its canonical order, no coefficient),
    without its general pass over powers and coefficients, which is most of the time of a
    large derivation (conv2d 28×28 with a 5×5 filter builds over 70,000 such products).
    ``tests/test_symbolic.py`` checks it against ``a * b``."""
    if type(a) is sp.Symbol and type(b) is sp.Symbol and a.is_commutative and b.is_commutative:
        ka, kb = _symbol_key(a), _symbol_key(b)
        if ka < kb:
            return sp.Mul._from_args((a, b), True)
        if kb < ka:
            return sp.Mul._from_args((b, a), True)
    if type(a) is sp.Symbol and type(b) is sp.Mul:
        return _symbol_times_product(a, b)
    if type(b) is sp.Symbol and type(a) is sp.Mul:
        return _symbol_times_product(b, a)
    return a * b


_compare_key = functools.cmp_to_key(sp.Basic.compare)


def _symbol_times_product(s: sp.Symbol, m: sp.Mul) -> Any:
    """``s * m`` for a product ``m`` that does not hold ``s`` (a weight times an adjoint, the
    chain rule's term through a step): ``m``'s factors with ``s`` inserted where SymPy's
    ``Mul`` sorts it (``Basic.compare``, the order of ``_mulsort``), the rational coefficient
    first — nothing in ``m`` combines with a symbol it does not contain.  ``m * s`` otherwise
    (``tests/test_proof_structure.py`` checks both against ``s * m``)."""
    if not (s.is_commutative and m.is_commutative) or s in m.free_symbols:
        return s * m
    args = m.args
    head: tuple[Any, ...] = ()
    if args[0].is_Number:
        if not args[0].is_Rational:
            return s * m
        head, args = args[:1], args[1:]
    k = bisect.bisect_right(args, _compare_key(s), key=_compare_key)
    return sp.Mul._from_args(head + args[:k] + (s,) + args[k:], True)


def _plain_pair(t: Any) -> bool:
    return (
        type(t) is sp.Mul
        and len(t.args) == 2
        and type(t.args[0]) is sp.Symbol
        and type(t.args[1]) is sp.Symbol
    )


@functools.lru_cache(maxsize=1 << 16)
def _symbol_key(s: sp.Symbol) -> tuple:
    # Basic.compare on two symbols: the length of their content, then the content (the name
    # and the assumptions)
    content = s._hashable_content()
    return (len(content), content)


def _pair_key(t: sp.Mul) -> tuple:
    # Basic.compare on two Muls of two symbols: the same class and length, then the factors
    # in turn, each a symbol compared by the length of its content, then its content
    return (_symbol_key(t.args[0]), _symbol_key(t.args[1]))


def total(terms: Sequence[Any]) -> Any:
    """``sp.Add(*terms)``.  Distinct products of two plain symbols (a convolution's sums, a
    chain rule's contractions) have nothing to collect, so their sum is SymPy's canonical
    ``Add`` of them in its canonical order, which :func:`_pair_key` gives as a tuple that
    Python compares in C — ``Add.flatten`` sorts with ``Basic.compare`` in Python, most of the
    time of a large derivation.  ``tests/test_symbolic.py`` checks it against ``sp.Add``; were
    SymPy's order ever to differ, the sum would still be the same sum (only ``==`` against a
    canonical one would fail, and :meth:`Derivation.verify` then proves the difference zero
    the long way)."""
    if len(terms) > 1 and all(_plain_pair(t) for t in terms) and len(set(terms)) == len(terms):
        return sp.Add._from_args(sorted(terms, key=_pair_key), True)
    return sp.Add(*terms)


def symbols(
    name: str, shape: tuple[int, ...], latex: str | None = None, **assumptions
) -> np.ndarray:
    """An object array of symbols ``name_{i,j,...}`` (1-based indices) of ``shape``.

    ``latex`` is the base used in LaTeX (``\\delta`` for ``d``), default ``name``.
    """
    base = latex or name
    out = np.empty(shape, dtype=object)
    for idx in itertools.product(*(range(n) for n in shape)):
        sub = ",".join(str(i + 1) for i in idx)
        out[idx] = sp.Symbol(f"{base}_{{{sub}}}" if idx else base, **assumptions)
    return out


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(ZERO)
    return out


def pad(a: np.ndarray, widths: Sequence[tuple[int, int]]) -> np.ndarray:
    """Zero-pad the last ``len(widths)`` axes; ``widths`` is a list of ``(before, after)``."""
    full = [(0, 0)] * (a.ndim - len(widths)) + list(widths)
    out = zeros(tuple(n + b + e for n, (b, e) in zip(a.shape, full)))
    out[tuple(slice(b, b + n) for n, (b, _) in zip(a.shape, full))] = a
    return out


def dilate(a: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Insert ``f - 1`` zeros between neighbours along each of the last axes."""
    lead = a.ndim - len(factors)
    shape = a.shape[:lead] + tuple(f * (n - 1) + 1 for n, f in zip(a.shape[lead:], factors))
    out = zeros(shape)
    out[(slice(None),) * lead + tuple(slice(None, None, f) for f in factors)] = a
    return out


def flip(a: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Reverse the given axes (``rot180`` of a 2-D filter is ``flip(w, (-2, -1))``)."""
    return a[
        tuple(
            slice(None, None, -1) if (i in axes or i - a.ndim in axes) else slice(None)
            for i in range(a.ndim)
        )
    ]


def correlate(
    x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int]
) -> np.ndarray:
    r"""Multi-channel cross-correlation of one image, no padding (pad beforehand).

    ``x (C, *spatial)`` and ``w (O, C, *kernel)`` give ``y (O, *out)`` with
    ``y[o, i] = Σ_{c, k} w[o, c, k] · x[c, i·stride + k·dilation]`` (per spatial axis), and
    ``out = floor((n - dilation (k - 1) - 1) / stride) + 1``.  Zero terms are skipped so that
    the expressions stay as sparse as the arithmetic.
    """
    from derivgrad.kernels import output_size

    ks = w.shape[2:]
    outs = tuple(
        output_size(n, k, s, 0, d) for n, k, s, d in zip(x.shape[1:], ks, stride, dilation)
    )
    with paused():
        fast = _correlate_symbols(x, w, stride, dilation, outs)
        return fast if fast is not None else _correlate_terms(x, w, stride, dilation, outs)


@functools.lru_cache(maxsize=1)
def _symbol_before_product() -> bool:
    # Basic.compare orders a symbol and a product by their classes alone (never by names):
    # asked of SymPy once rather than assumed
    a, b, c = sp.symbols("a b c")
    return sp.Add(a * b, c).args[0] == c


def plus(e: Any, s: Any) -> Any:
    """``e + s``.  A sum of products of two plain symbols (a correlation's entry) plus a plain
    symbol (a bias) is SymPy's ``Add`` of the terms and the symbol, the symbol before or after
    every product (:func:`_symbol_before_product`): without ``Add.flatten``'s sort of the
    whole sum again.  ``tests/test_symbolic_fast_paths.py`` checks it against ``e + s``."""
    terms = e.args if type(e) is sp.Add else (e,)
    if type(s) is sp.Symbol and s.is_commutative and all(_plain_pair(t) for t in terms):
        both = (s,) + terms if _symbol_before_product() else terms + (s,)
        return sp.Add._from_args(both, True)
    return e + s


def _windows(a: np.ndarray, ks: Sequence[int], stride, dilation, outs) -> np.ndarray:
    """``(C·Π ks, Π outs)``: for each channel and tap, the entries of ``a (C, *spatial)`` the
    windows read, in the order of ``w[o].reshape(-1)`` and of the output positions."""
    rows = []
    for c in range(a.shape[0]):
        for k in itertools.product(*(range(n) for n in ks)):
            sl = tuple(
                slice(kk * d, kk * d + s * (o - 1) + 1, s)
                for kk, s, d, o in zip(k, stride, dilation, outs)
            )
            rows.append(a[(c,) + sl].reshape(-1))
    return np.stack(rows)


def _correlate_symbols(x, w, stride, dilation, outs) -> np.ndarray | None:
    """The correlation of arrays of plain symbols and zeros, its sums built directly in
    SymPy's canonical form: every symbol gets its rank in SymPy's order (:func:`_symbol_key`),
    a product ``a·b`` the integer ``rank(a)·R + rank(b)`` (``a`` first), and an output entry
    is the ``Add`` of its products sorted by that integer — the ``Add`` SymPy's ``flatten``
    builds, without its Python-level sort and without building each product more than once.
    ``None`` (the general path then runs) when an entry is anything else, a window reads a
    symbol twice or multiplies a symbol by itself: sums with coefficients."""
    found: dict[Any, None] = {}
    for a in (x, w):
        for e in a.flat:
            if type(e) is sp.Symbol and e.is_commutative:
                found[e] = None
            elif not (e is ZERO or e == 0):
                return None
    order = sorted(found, key=_symbol_key)
    R = len(order) + 1
    rank = {s: r for r, s in enumerate(order)}

    def ranks(a: np.ndarray) -> np.ndarray:
        return np.array([rank.get(e, -1) for e in a.flat], dtype=np.int64).reshape(a.shape)

    O = w.shape[0]
    X = _windows(ranks(x), w.shape[2:], stride, dilation, outs)  # (T, P)
    W = ranks(w).reshape(O, -1)  # (O, T)
    big = np.int64(R * R)
    y = np.empty((O, X.shape[1]), dtype=object)
    made: dict[int, Any] = {}
    for o in range(O):
        A = np.broadcast_to(W[o][:, None], X.shape)
        live = (A >= 0) & (X >= 0)
        if np.any(live & (A == X)):
            return None
        key = np.where(live, np.minimum(A, X) * R + np.maximum(A, X), big)
        key.sort(axis=0)
        if np.any((key[1:] == key[:-1]) & (key[1:] != big)):
            return None
        count = live.sum(axis=0)
        for p in range(X.shape[1]):
            terms = []
            for k in key[: count[p], p].tolist():
                m = made.get(k)
                if m is None:
                    m = made[k] = sp.Mul._from_args((order[k // R], order[k % R]), True)
                terms.append(m)
            y[o, p] = (
                sp.Add._from_args(tuple(terms), True)
                if len(terms) > 1
                else (terms[0] if terms else ZERO)
            )
    return y.reshape((O,) + tuple(outs))


def _correlate_terms(x, w, stride, dilation, outs) -> np.ndarray:
    O, C = w.shape[:2]
    ks = w.shape[2:]
    y = np.empty((O,) + outs, dtype=object)
    for o in range(O):
        for i in itertools.product(*(range(n) for n in outs)):
            terms = []
            for c in range(C):
                for k in itertools.product(*(range(n) for n in ks)):
                    wv = w[(o, c) + k]
                    xv = x[
                        (c,)
                        + tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, stride, dilation))
                    ]
                    if (type(wv) is sp.Symbol or wv != 0) and (type(xv) is sp.Symbol or xv != 0):
                        terms.append(times(wv, xv))
            y[(o,) + i] = total(terms)
    return y


def to_array(a: Any) -> sp.Array:
    """Object array → ``sympy.ImmutableDenseNDimArray`` (a 0-d array becomes shape ``()``)."""
    a = np.asarray(a, dtype=object)
    if a.ndim == 0:
        return sp.Array(a.item())
    return sp.ImmutableDenseNDimArray(list(a.reshape(-1)), a.shape)
