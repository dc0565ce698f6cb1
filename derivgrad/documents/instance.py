r"""Numeric instances of a derivation: numbers for some or all of its inputs and for δ.

``derive(op, ..., values={"x": [[1, 2, 0], ...], "upstream": [[1, 0], [-1, 2]]})`` and the
command line's ``--value NAME=ARRAY`` / ``--random-values SEED`` land here.  Values are kept
*exact* (SymPy integers and rationals; a float stays a float), so a worked solution with
integer inputs prints integers and fractions, never ``0.30000000000000004``.  Names are those
of ``d.inputs`` plus ``"upstream"`` for δ = ∂L/∂y; a name left out stays symbolic.

The document steps that print these numbers live in :mod:`derivgrad.documents.numeric_steps`; this
module holds the data: parsing, validation, substitution and the kernel comparison.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import sympy as sp

from ..errors import ParamError
from ..symbolic.derivation import Derivation
from ..symbolic.reader import as_expr, read_number

UPSTREAM = "upstream"
RANDOM_RANGE = (-3, 3)  # small integers keep every step of a worked solution readable


def value_names(d: Derivation) -> list[str]:
    """The names ``values`` may give: the inputs, plus ``upstream`` when the output is not
    the loss itself."""
    names = list(d._inputs)
    if _has_upstream(d):
        names.append(UPSTREAM)
    return names


def _has_upstream(d: Derivation) -> bool:
    return any(isinstance(s, sp.Symbol) for s in np.asarray(d._upstream).reshape(-1))


def _symbol_array(d: Derivation, name: str) -> np.ndarray:
    return d._upstream if name == UPSTREAM else d._inputs[name]


def _number(v: Any, name: str) -> sp.Expr:
    """One entry as an exact SymPy number (int, Fraction, ``"1/2"`` → Rational, ``"0.1"`` →
    1/10; a float stays a float).  Text is parsed by the one expression reader, never
    evaluated."""
    if isinstance(v, bool):
        raise ParamError(f"values[{name!r}]: {v!r} is not a number")
    if isinstance(v, Fraction):
        return sp.Rational(v.numerator, v.denominator)
    if isinstance(v, np.integer):
        v = int(v)
    elif isinstance(v, np.floating):
        v = float(v)
    if isinstance(v, str):
        e = read_number(v, what=f"values[{name!r}]", error=ParamError, exact=True)
    elif isinstance(v, int | float | sp.Expr):
        e = as_expr(v)
    else:
        raise ParamError(f"values[{name!r}]: {_shown(v)} is not a number")
    if not (isinstance(e, sp.Expr) and e.is_number and e.is_real) or e.has(sp.zoo, sp.nan):
        raise ParamError(f"values[{name!r}]: {_shown(v)} is not a finite real number")
    if isinstance(e, sp.Float) and not np.isfinite(float(e)):
        raise ParamError(f"values[{name!r}]: {_shown(v)} is not a finite real number")
    return e


def _shown(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def exact_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` (nested lists, a NumPy array or a number) as an object array of exact SymPy
    numbers of ``shape``; a value with as many entries (``[[1, 2], [3, 4]]`` for an input of
    shape ``(1, 1, 2, 2)``) is reshaped, anything else is a ``ParamError`` naming ``name``."""
    try:
        raw = np.array(value, dtype=object)
    except ValueError:
        raise ParamError(f"values[{name!r}] is ragged: every row needs the same length") from None
    if raw.dtype != object or any(isinstance(v, list) for v in raw.reshape(-1)):
        raise ParamError(f"values[{name!r}] is ragged: every row needs the same length")
    flat = [_number(v, name) for v in raw.reshape(-1)]  # what is wrong with an entry first
    size = int(np.prod(shape)) if shape else 1
    if raw.size != size:
        raise ParamError(
            f"values[{name!r}] has shape {raw.shape} ({raw.size} entries); the derivation's "
            f"{name} has shape {tuple(shape)} ({size} entries)"
        )
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(shape)


def parse_array(text: str, name: str = "value") -> Any:
    """A command-line array: ``'[[1,2,0],[0,-1,3]]'``, ``'1/2'`` or ``'[0.5, -1]'`` (fractions
    as ``p/q`` stay exact).  Brackets and commas are read here, without recursion; each entry
    is left as text for :func:`exact_array`, which reads it with the one expression reader."""
    t = text.strip()
    if not t:
        raise ParamError(f"--value {name}= is empty; give a number or a nested list")
    root: list[Any] = []
    stack = [root]
    want_item = True  # after '[' or ',' (or at the start) an entry or '[' comes next
    for m in re.finditer(r"\s*(\[|\]|,|[^\[\],]+)", t):
        tok = m.group(1).strip()
        if tok == "[" and want_item:
            if len(stack) > MAX_VALUE_DEPTH:
                raise ParamError(f"--value {name}: nested more than {MAX_VALUE_DEPTH} deep")
            stack[-1].append([])
            stack.append(stack[-1][-1])
        elif tok == "]" and len(stack) > 1 and (not want_item or not stack[-1]):
            stack.pop()
            want_item = False
        elif tok == "," and not want_item and len(stack) > 1:
            want_item = True
        elif tok not in "[],," and want_item:
            stack[-1].append(tok)
            want_item = False
        else:
            where = m.start(1) + 1 + (len(text) - len(text.lstrip()))
            raise ParamError(
                f"--value {name}: cannot read {_shown(text)} as a nested list "
                f"(unexpected {tok[:20]!r} at column {where})"
            )
    if len(stack) != 1 or len(root) != 1:
        raise ParamError(f"--value {name}: cannot read {_shown(text)} as a nested list")
    return root[0]


MAX_VALUE_DEPTH = 32


def attach(d: Derivation, values: Mapping[str, Any]) -> Derivation:
    """A copy of ``d`` with numbers for some of its inputs (and δ): its ``values`` holds them
    as exact object arrays shaped like the inputs.  ``d`` itself is left as it was (the
    copy shares its symbolic results, which the numbers do not change)."""
    if not isinstance(values, Mapping):
        raise ParamError(f"values must be a dict name -> array, got {type(values).__name__}")
    allowed = value_names(d)
    out = {}
    for name, v in values.items():
        if name not in allowed:
            raise ParamError(
                f"values: {d.op} has no input named {name!r}; it takes {', '.join(allowed)}"
            )
        out[name] = exact_array(name, v, _symbol_array(d, name).shape)
    numeric = copy.copy(d)
    numeric.values = out
    return numeric


def random_values(d: Derivation, seed: int) -> dict[str, np.ndarray]:
    """Small integers in ``RANDOM_RANGE`` for every input and δ, from ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ParamError(f"random values: the seed must be a whole number >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    lo, hi = RANDOM_RANGE
    return {
        name: rng.integers(lo, hi + 1, size=_symbol_array(d, name).shape).astype(object)
        for name in value_names(d)
    }


def substitutions(d: Derivation, constants: bool = True) -> dict[sp.Symbol, sp.Expr]:
    """``{symbol: number}`` for every given value (and the op's fixed constants, e.g. ε)."""
    subs: dict[sp.Symbol, sp.Expr] = {}
    for name, arr in getattr(d, "values", {}).items():
        for s, v in zip(_symbol_array(d, name).reshape(-1), arr.reshape(-1)):
            if isinstance(s, sp.Symbol):
                subs[s] = v
    if constants and subs:
        subs.update(d.constants)
    return subs


def evaluate(arr: Any, subs: Mapping[sp.Symbol, sp.Expr]) -> np.ndarray:
    """Every entry of an object array with the numbers substituted (exact where they are)."""
    a = np.asarray(arr, dtype=object)
    out = np.empty(a.shape, dtype=object)
    for i in itertools.product(*(range(n) for n in a.shape)):
        out[i] = as_expr(a[i]).xreplace(dict(subs))
    return out


def numbers(d: Derivation, name: str | None = None) -> sp.Array:
    """The closed-form gradient of ``name`` (the forward output when ``None``) at ``d``'s
    values, as a ``sympy.Array`` (a notebook shows it as a matrix)."""
    arr = d.output_array if name is None else d.grad_array(name)
    return sp.Array(evaluate(arr, substitutions(d)).tolist() if arr.ndim else arr.item())


def complete(d: Derivation) -> bool:
    """Whether every input and δ has numbers (so the kernels can run on them)."""
    return set(value_names(d)) <= set(getattr(d, "values", {}))


def kernel_comparison(d: Derivation) -> dict[str, float | str] | None:
    """Run the op's kernel face on the numbers and compare, array by array, with the exact
    forward output and closed-form gradients: ``{"output": max |diff|, name: max |diff|}``;
    ``None`` when some input is still symbolic.  Computed, never assumed.

    An array that cannot be compared in float64 gets a sentence instead of a number: its
    exact values beyond float64 (an overflow such as ``exp(1000)`` or values near 1e308), or
    the kernels giving inf or NaN where the exact values are finite (a failure, stated as
    one).  A NaN never reads as a tolerance."""
    from ..registry import get

    if not complete(d):
        return None
    subs = substitutions(d)
    floats = {k: np.array(v, dtype=np.float64) for k, v in d.values.items() if k != UPSTREAM}
    up = d.values.get(UPSTREAM)
    upstream = (
        np.array(up, dtype=np.float64)
        if up is not None
        else np.ones(np.asarray(d._upstream).shape, dtype=np.float64)
    )
    with np.errstate(all="ignore"):  # overflow is reported below, array by array
        y, grads = get(d.op).kernel(d, floats, upstream)
    report: dict[str, float | str] = {}
    arrays = {"output": (d._output, y)}
    arrays.update({name: (d.grad_array(name), grads[name]) for name in d.grad_names})
    for name, (exact_expr, got_raw) in arrays.items():
        exact = _float64(evaluate(exact_expr, subs))
        got = np.asarray(got_raw, dtype=np.float64).reshape(exact.shape)
        if not np.all(np.isfinite(exact)):
            report[name] = (
                "not compared: its exact values are beyond float64 "
                f"({_first_bad(exact)}), so float64 kernels cannot give them"
            )
        elif not np.all(np.isfinite(got)):
            report[name] = f"the kernels give {_first_bad(got)} where the exact values are finite"
        else:
            report[name] = float(np.max(np.abs(got - exact))) if exact.size else 0.0
    return report


def _float64(a: np.ndarray) -> np.ndarray:
    """Exact numbers as float64, inf where they overflow and NaN where they are not real."""
    out = np.empty(a.shape, dtype=np.float64)
    for i in itertools.product(*(range(n) for n in a.shape)):
        v = a[i]
        try:
            out[i] = float(v)
        except OverflowError:
            out[i] = math.inf if v > 0 else -math.inf
        except (TypeError, ValueError):  # zoo, nan, a complex or symbolic value
            out[i] = math.nan
    return out


def _first_bad(a: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    where = f" at {tuple(i + 1 for i in idx)}" if idx else ""
    return f"{a[idx]}{where}"


def failed_checks(report: Mapping[str, float | str]) -> dict[str, str]:
    """The arrays of a kernel check that were not compared or disagree, with why."""
    return {k: v for k, v in report.items() if isinstance(v, str)}
