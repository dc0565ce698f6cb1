r"""Numeric instances of a derivation: numbers for some or all of its inputs and for δ.

``derive(op, ..., values={"x": [[1, 2, 0], ...], "upstream": [[1, 0], [-1, 2]]})`` and the
command line's ``--value NAME=ARRAY`` / ``--random-values SEED`` land here.  Values are kept
*exact* (SymPy integers and rationals; a float stays a float), so a worked solution with
integer inputs prints integers and fractions, never ``0.30000000000000004``.  Names are those
of ``d.inputs`` plus ``"upstream"`` for δ = ∂L/∂y; a name left out stays symbolic.

The document steps that print these numbers live in :mod:`derivgrad.numeric_steps`; this
module holds the data: parsing, validation, substitution and the kernel comparison.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import sympy as sp

from .errors import ParamError
from .symbolic.derivation import Derivation

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
    """One entry as an exact SymPy number (int, Fraction, ``"1/2"`` → Rational; float stays)."""
    if isinstance(v, bool):
        raise ParamError(f"values[{name!r}]: {v!r} is not a number")
    if isinstance(v, Fraction):
        return sp.Rational(v.numerator, v.denominator)
    if isinstance(v, np.integer):
        v = int(v)
    elif isinstance(v, np.floating):
        v = float(v)
    try:
        e = sp.sympify(v, rational=isinstance(v, str))
    except (sp.SympifyError, TypeError, SyntaxError):
        raise ParamError(f"values[{name!r}]: {v!r} is not a number") from None
    if not (isinstance(e, sp.Expr) and e.is_number and e.is_real) or e.has(sp.zoo, sp.nan):
        raise ParamError(f"values[{name!r}]: {v!r} is not a finite real number")
    if isinstance(e, sp.Float) and not np.isfinite(float(e)):
        raise ParamError(f"values[{name!r}]: {v!r} is not a finite real number")
    return e


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
    as ``p/q`` stay exact)."""
    import ast

    t = text.strip()
    if not t:
        raise ParamError(f"--value {name}= is empty; give a number or a nested list")
    try:
        tree = ast.parse(t, mode="eval")
    except SyntaxError:
        raise ParamError(f"--value {name}: cannot read {text!r} as a nested list") from None

    def is_number(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, int | float) and not isinstance(node.value, bool)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return is_number(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return is_number(node.left) and is_number(node.right)
        return False

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.List | ast.Tuple):
            return [walk(e) for e in node.elts]
        if is_number(node):  # read exactly by SymPy later: "1/2" stays one half
            return ast.unparse(node)
        raise ParamError(f"--value {name}: {ast.unparse(node)!r} is not a number")

    return walk(tree.body)


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
        out[i] = sp.sympify(a[i]).xreplace(dict(subs))
    return out


def numbers(d: Derivation, name: str | None = None) -> sp.Array:
    """The closed-form gradient of ``name`` (the forward output when ``None``) at ``d``'s
    values, as a ``sympy.Array`` (a notebook shows it as a matrix)."""
    arr = d.output_array if name is None else d.grad_array(name)
    return sp.Array(evaluate(arr, substitutions(d)).tolist() if arr.ndim else arr.item())


def complete(d: Derivation) -> bool:
    """Whether every input and δ has numbers (so the kernels can run on them)."""
    return set(value_names(d)) <= set(getattr(d, "values", {}))


def kernel_comparison(d: Derivation) -> dict[str, float] | None:
    """Run the op's kernel face on the numbers and compare, array by array, with the exact
    forward output and closed-form gradients: ``{"output": max |diff|, name: max |diff|}``;
    ``None`` when some input is still symbolic.  Computed, never assumed."""
    from .registry import get

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
    y, grads = get(d.op).kernel(d, floats, upstream)
    exact_y = np.array(evaluate(d._output, subs), dtype=np.float64)
    report = {"output": float(np.max(np.abs(np.asarray(y).reshape(exact_y.shape) - exact_y)))}
    for name in d.grad_names:
        exact = np.array(evaluate(d.grad_array(name), subs), dtype=np.float64)
        got = np.asarray(grads[name], dtype=np.float64).reshape(exact.shape)
        report[name] = float(np.max(np.abs(got - exact))) if exact.size else 0.0
    return report
