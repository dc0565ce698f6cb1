r"""A derivation as data (``derivgrad derive OP --format json``), read back with :func:`read`.

The document follows ``derivation.schema.json`` (beside this module; JSON Schema 2020-12)
and carries ``"version"``.  Expressions are strings in SymPy's own syntax: every
symbol is written as a plain identifier (``w_1_1`` for ``w`` at 1-based index (1, 1),
``delta_1_1`` for δ) listed in ``"symbols"`` with its input, index, SymPy name and
assumptions, and derivgrad's kink functions (``Relu``, ``Step``, ``WindowMax``,
``FirstMax``) are listed in ``"functions"``.  :func:`read` does exactly that and returns the
arrays as SymPy objects, equal to those of ``derive(...)``.

Layout: ``jacobian[name]`` has shape ``inputs[name].shape + output.shape`` and entry
``[i, o]`` is ``∂ output[o] / ∂ input[i]`` (SymPy's ``derive_by_array``; PyTorch's
``jacobian`` puts the output first); only its non-zero entries are listed.
"""

from __future__ import annotations

import itertools
import json
import keyword
import math
import os
import re
from importlib import resources
from typing import Any

import numpy as np
import sympy as sp
from sympy.core.assumptions import _assume_defined

from ..errors import DataError
from ..symbolic import functions as _functions
from ..symbolic.derivation import Derivation
from ..symbolic.reader import RESERVED, as_expr, read_expr, read_number
from . import Writer
from ._schema_check import violation

VERSION = 1
SCHEMA_FILE = "derivation.schema.json"
UPSTREAM = "upstream"


def schema() -> dict[str, Any]:
    """The JSON Schema of this format."""
    return json.loads(resources.files(__package__).joinpath(SCHEMA_FILE).read_text())


def _kink_functions() -> dict[str, Any]:
    return {
        name: f
        for name, f in vars(_functions).items()
        if isinstance(f, type)
        and issubclass(f, sp.Function)
        and f.__module__ == _functions.__name__
    }


def _ident(base: str, idx: tuple[int, ...], taken: set[str]) -> str:
    """A fresh identifier for ``base`` at ``idx`` (0-based, written 1-based): ``w_1_1``; one
    already ``taken`` (``x`` at (1, 1) and ``x_1`` at (1,) both read ``x_1_1``), reserved
    (``exp``, ``pi``) or a keyword gets ``_`` appended until it is free, so every symbol has
    its own identifier whatever the names (the table, not the spelling, says what each is)."""
    stem = re.sub(r"\W+", "_", base).strip("_") or "s"
    if stem[0].isdigit():
        stem = "s_" + stem
    ident = "_".join([stem, *(str(i + 1) for i in idx)])
    while ident in taken or ident in RESERVED or keyword.iskeyword(ident):
        ident += "_"
    taken.add(ident)
    return ident


def _nested(a: np.ndarray, f) -> Any:
    a = np.asarray(a, dtype=object)
    if a.ndim == 0:
        return f(a.item())
    return [_nested(x, f) for x in a]


def _exact(v: sp.Expr) -> str:
    return str(v)


def _symbol_table(d: Derivation) -> tuple[dict[str, Any], dict[sp.Symbol, sp.Symbol]]:
    """Every symbol of ``d`` as ``{identifier: description}`` and the renaming for printing."""
    table: dict[str, Any] = {}
    rename: dict[sp.Symbol, sp.Symbol] = {}
    taken: set[str] = set()
    groups = [(name, name, arr) for name, arr in d.input_arrays.items()]
    if _has_upstream(d):
        groups.append((UPSTREAM, "delta", d.upstream_array))
    for name, base, arr in groups:
        for idx in itertools.product(*(range(n) for n in arr.shape)):
            s = arr[idx]
            if not isinstance(s, sp.Symbol):
                continue
            ident = _ident(base, idx, taken)
            table[ident] = {"input": name, "index": [i + 1 for i in idx], "name": s.name}
            rename[s] = sp.Symbol(ident)
    others = set().union(*(e.free_symbols for e in d.output_array.reshape(-1))) - set(rename)
    for s in sorted(others, key=lambda s: s.name):
        ident = _ident(s.name.replace("\\", ""), (), taken)
        table[ident] = {"input": None, "index": [], "name": s.name}
        rename[s] = sp.Symbol(ident)
    original_of = {r.name: s for s, r in rename.items()}
    for ident, entry in table.items():
        original = original_of[ident]
        # all of SymPy's assumptions (a symbol's identity includes them), commutative implied
        entry["assumptions"] = {
            k: v for k, v in sorted(original.assumptions0.items()) if k != "commutative" or not v
        }
    return table, rename


def _has_upstream(d: Derivation) -> bool:
    return any(isinstance(s, sp.Symbol) for s in d.upstream_array.reshape(-1))


def to_data(d: Derivation) -> dict[str, Any]:
    """The derivation as a JSON-ready dict (see the module docstring and the schema)."""
    from ..documents.instance import complete, evaluate, kernel_comparison, substitutions
    from ..registry import get

    table, rename = _symbol_table(d)

    def expr(e: Any) -> str:
        return str(as_expr(e).xreplace(rename))

    op = get(d.op)
    output, grads = d.output_array, {k: d.grad_array(k) for k in d.grad_names}
    subexpressions: list[dict[str, str]] = []
    if op.slow:
        # a whole network: its expressions share large subexpressions (printed as a tree they
        # run to megabytes), so they are written once each, in order, as cse_0, cse_1, ...
        output, grads, subexpressions = _shared(output, grads, rename)

        def expr(e: Any) -> str:  # unsorted printing: the sorted one is quadratic here
            return sp.sstr(as_expr(e).xreplace(rename), order="none")

    subs = substitutions(d)
    values = getattr(d, "values", {})
    data: dict[str, Any] = {
        "version": VERSION,
        "op": d.op,
        "title": op.title,
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.params.items()},
        "symbols": table,
        "functions": sorted(_kink_functions()),
        "constants": {
            expr(s): str(v) for s, v in sorted(d.constants.items(), key=lambda kv: str(kv[0]))
        },
        "inputs": {
            k: {"shape": list(v.shape), "symbols": _nested(v, expr)}
            for k, v in d.input_arrays.items()
        },
        "subexpressions": subexpressions,
        "output": {
            "shape": list(output.shape),
            "expressions": _nested(output, expr),
            "is_loss": not _has_upstream(d),
        },
        "upstream": (
            {"shape": list(d.upstream_array.shape), "symbols": _nested(d.upstream_array, expr)}
            if _has_upstream(d)
            else None
        ),
        "jacobian": {
            "layout": "input shape + output shape; entry [i, o] = d output[o] / d input[i]",
            "entries": {},
        },
        "gradients": {},
        "values": {k: _nested(v, _exact) for k, v in values.items()},
        "forward_values": None,
        "kernel_check": None,
        "proof": {
            "method": d.proof.name,
            "verified": True if "verify" in d.timings else None,
            "notes": list(d.notes),
        },
    }
    for k, v in d.input_arrays.items():
        shape = list(v.shape) + list(d.output_array.shape)
        if op.slow:
            # a whole network: its Jacobians are megabytes of nested expressions, and its
            # documents never print them either; d.jacobian(name) gives them
            data["jacobian"]["entries"][k] = {"shape": shape, "nonzero": None}
            continue
        J = d.jacobian_array(k)
        data["jacobian"]["entries"][k] = {
            "shape": shape,
            "nonzero": [
                {"index": [i + 1 for i in idx], "expression": expr(J[idx])}
                for idx in itertools.product(*(range(n) for n in J.shape))
                if J[idx] != 0
            ],
        }
    for k in d.grad_names:
        g = grads[k]
        entry: dict[str, Any] = {
            "rule": d.rules[k].text,
            "shape": list(g.shape),
            "expressions": _nested(g, expr),
            "values": None,
        }
        if values:
            entry["values"] = _nested(evaluate(d.grad_array(k), subs), _value)
        data["gradients"][k] = entry
    if values:
        data["forward_values"] = _nested(evaluate(d.output_array, subs), _value)
        if complete(d):
            data["kernel_check"] = kernel_comparison(d)
    return data


def _shared(
    output: np.ndarray, grads: dict[str, np.ndarray], rename: dict
) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict[str, str]]]:
    """Output and gradients with common subexpressions named ``cse_k`` (``sympy.cse``)."""
    arrays = [output, *grads.values()]
    flat = [as_expr(e).xreplace(rename) for a in arrays for e in a.reshape(-1)]
    taken = {r.name for r in rename.values()}
    fresh = (s for s in sp.numbered_symbols("cse_") if s.name not in taken)
    reps, reduced = sp.cse(flat, symbols=fresh, order="none")
    out, k = [], 0
    for a in arrays:
        part = np.empty(a.size, dtype=object)
        part[:] = reduced[k : k + a.size]
        out.append(part.reshape(a.shape))
        k += a.size
    subs = [{"name": s.name, "expression": sp.sstr(e, order="none")} for s, e in reps]
    return out[0], dict(zip(grads, out[1:])), subs


def _value(v: sp.Expr) -> Any:
    """An evaluated entry: an exact string when rational, a float when another number, else
    the remaining expression (inputs left symbolic) as a string."""
    v = as_expr(v)
    if v.is_Rational:
        return str(v)
    if v.is_number:
        try:
            f = float(v)
        except (OverflowError, TypeError, ValueError):
            return str(v)
        return f if math.isfinite(f) else str(v)  # JSON has no inf: exact text instead
    return str(v)


def dumps(d: Derivation) -> str:
    """The JSON text of ``d`` (indented, one trailing newline)."""
    return json.dumps(to_data(d), indent=1, ensure_ascii=False) + "\n"


READ_LIMIT = 256 * 2**20  # characters of a document (a whole network's is ~10^6)
MAX_ENTRIES = 4_000_000  # array entries read back in all, Jacobians included (dense)


def read(source: Any) -> dict[str, Any]:
    """Read a document of this format back into SymPy: ``{"inputs": {name: array},
    "output": array, "upstream": array | None, "gradients": {name: array},
    "jacobian": {name: array}, "values": {name: array}, "forward_values": array | None,
    "gradient_values": {name: array}, "constants": {symbol: number}}`` of object arrays
    (``jacobian``
    leaves out an op whose Jacobians were not written: a whole network) (the symbols are the
    derivation's own: same names and assumptions).

    ``source``: a path (``str`` or path-like) of a file, an open file, the JSON text, or its
    ``dict``.  The document is checked against the schema, its shapes against the entries it
    holds and :data:`MAX_ENTRIES`, before anything is built; every expression is parsed by
    :func:`derivgrad.symbolic.reader.read_expr` (never evaluated).  Anything wrong is a
    :class:`~derivgrad.errors.DataError` of one line."""
    data = _load(source)
    why = violation(data, schema())
    if why:
        raise DataError(f"derivgrad JSON: {why}")
    _check_shapes(data)
    local: dict[str, Any] = {}
    for ident, entry in data["symbols"].items():
        if not ident.isidentifier() or ident in RESERVED or keyword.iskeyword(ident):
            raise DataError(f"derivgrad JSON: $.symbols: {ident[:40]!r} is not a usable identifier")
        bad = [k for k, v in entry["assumptions"].items() if k not in _ASSUMPTIONS]
        if bad:
            raise DataError(f"derivgrad JSON: $.symbols.{ident}: unknown assumption {bad[0]!r}")
        try:
            local[ident] = sp.Symbol(entry["name"], **entry["assumptions"])
        except (ValueError, TypeError, ArithmeticError) as e:  # contradicting assumptions
            raise DataError(f"derivgrad JSON: $.symbols.{ident}: {e}") from None

    shared: dict[sp.Symbol, sp.Expr] = {}
    for n, sub in enumerate(data["subexpressions"]):  # in order: each may use those before
        name = sub["name"]
        if not name.isidentifier() or name in local or name in RESERVED:
            raise DataError(
                f"derivgrad JSON: $.subexpressions[{n}]: {name[:40]!r} is not a new identifier"
            )
        placeholder = sp.Symbol(name)
        at = f"derivgrad JSON: $.subexpressions[{n}]"
        shared[placeholder] = read_expr(sub["expression"], local, what=at).xreplace(shared)
        local[name] = placeholder

    def parse(s: str, at: str) -> sp.Expr:
        return read_expr(s, local, what=f"derivgrad JSON: {at}").xreplace(shared)

    def array(nested: Any, shape: list[int], at: str, read=parse) -> np.ndarray:
        flat = list(_leaves(nested, len(shape)))
        out = np.empty(len(flat), dtype=object)
        out[:] = [read(s, f"{at}[{k}]") for k, s in enumerate(flat)]
        return out.reshape(shape)

    def value(v: Any, at: str) -> sp.Expr:
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise DataError(f"derivgrad JSON: {at}: not a number or an expression")
        return parse(v, at) if isinstance(v, str) else as_expr(v)

    constants = {}
    for k, v in data["constants"].items():
        if k not in data["symbols"]:
            raise DataError(f"derivgrad JSON: $.constants: {k[:40]!r} is not a symbol")
        constants[local[k]] = read_number(v, what=f"derivgrad JSON: $.constants.{k}")
    out_shape = data["output"]["shape"]
    jac = {}
    for k, entry in data["jacobian"]["entries"].items():
        if entry["nonzero"] is None:
            continue
        J = np.full(entry["shape"], sp.Integer(0), dtype=object)
        for n, nz in enumerate(entry["nonzero"]):
            J[tuple(i - 1 for i in nz["index"])] = parse(
                nz["expression"], f"$.jacobian.entries.{k}.nonzero[{n}]"
            )
        jac[k] = J
    up = data["upstream"]
    inputs = data["inputs"]
    return {
        "inputs": {k: array(v["symbols"], v["shape"], f"$.inputs.{k}") for k, v in inputs.items()},
        "output": array(data["output"]["expressions"], data["output"]["shape"], "$.output"),
        "upstream": None if up is None else array(up["symbols"], up["shape"], "$.upstream"),
        "gradients": {
            k: array(v["expressions"], v["shape"], f"$.gradients.{k}")
            for k, v in data["gradients"].items()
        },
        "jacobian": jac,
        "values": {
            k: array(v, _value_shape(data, k), f"$.values.{k}", value)
            for k, v in data["values"].items()
        },
        "forward_values": (
            None
            if data["forward_values"] is None
            else array(data["forward_values"], out_shape, "$.forward_values", value)
        ),
        "gradient_values": {
            k: array(g["values"], g["shape"], f"$.gradients.{k}.values", value)
            for k, g in data["gradients"].items()
            if g["values"] is not None
        },
        "constants": constants,
    }


_ASSUMPTIONS = frozenset(_assume_defined)


def _load(source: Any) -> Any:
    """The parsed JSON of ``source`` (see :func:`read`), or a one-line ``DataError``."""
    if isinstance(source, dict):
        return source
    if hasattr(source, "read"):
        text = source.read(READ_LIMIT + 1)
        where = getattr(source, "name", "the file")
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        text, where = source, "the JSON text"
    elif isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise DataError(f"derivgrad JSON: {path!r} is not a file (nor JSON text)")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(READ_LIMIT + 1)
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"derivgrad JSON: cannot read {path!r}: {e}") from None
        where = repr(path)
    elif isinstance(source, bytes):
        text, where = source.decode("utf-8", errors="replace"), "the JSON text"
    else:
        raise DataError(
            f"derivgrad JSON: read() takes a path, a file, the text or a dict, "
            f"not {type(source).__name__}"
        )
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if len(text) > READ_LIMIT:
        raise DataError(f"derivgrad JSON: {where} is over {READ_LIMIT // 2**20} MiB")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"derivgrad JSON: {where} is not JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except RecursionError:
        raise DataError(f"derivgrad JSON: {where} is nested too deeply") from None


def _size(shape: list[int]) -> int:
    return math.prod(shape)


def _leaves(nested: Any, ndim: int) -> Any:
    """The entries of a nested list ``ndim`` deep, in row-major order (shape already checked)."""
    if ndim == 0:
        yield nested
        return
    for x in nested:
        yield from _leaves(x, ndim - 1)


def _conforms(nested: Any, shape: list[int]) -> bool:
    """Whether ``nested`` is a nested list of exactly ``shape`` with scalar leaves."""
    level = [nested]
    for n in shape:
        if not all(isinstance(x, list) and len(x) == n for x in level):
            return False
        level = [y for x in level for y in x]
    return not any(isinstance(x, list | dict) for x in level)


def _value_shape(data: dict[str, Any], name: str) -> list[int]:
    if name in data["inputs"]:
        return data["inputs"][name]["shape"]
    if name == UPSTREAM and data["upstream"] is not None:
        return data["upstream"]["shape"]
    raise DataError(f"derivgrad JSON: $.values: {name[:40]!r} is neither an input nor upstream")


def _check_shapes(data: dict[str, Any]) -> None:
    """Every declared shape against the entries actually held, and the total against
    :data:`MAX_ENTRIES`: nothing is allocated for entries the file does not hold."""
    total = 0

    def held(nested: Any, shape: list[int], at: str) -> None:
        nonlocal total
        if len(shape) > 16 or _size(shape) > MAX_ENTRIES:
            raise DataError(f"derivgrad JSON: {at}: shape {shape} is larger than {MAX_ENTRIES:,}")
        if not _conforms(nested, shape):
            raise DataError(f"derivgrad JSON: {at}: the entries do not have shape {shape}")
        total += _size(shape)

    for k, v in data["inputs"].items():
        held(v["symbols"], v["shape"], f"$.inputs.{k}")
    out_shape = data["output"]["shape"]
    held(data["output"]["expressions"], out_shape, "$.output")
    if data["upstream"] is not None:
        if data["upstream"]["shape"] != out_shape:
            raise DataError("derivgrad JSON: $.upstream: its shape is not the output's")
        held(data["upstream"]["symbols"], out_shape, "$.upstream")
    for k, g in data["gradients"].items():
        if k not in data["inputs"] or g["shape"] != data["inputs"][k]["shape"]:
            raise DataError(f"derivgrad JSON: $.gradients.{k}: not an input's shape")
        held(g["expressions"], g["shape"], f"$.gradients.{k}")
    for k, v in data["values"].items():
        held(v, _value_shape(data, k), f"$.values.{k}")
    if data["forward_values"] is not None:
        held(data["forward_values"], out_shape, "$.forward_values")
    for k, g in data["gradients"].items():
        if g["values"] is not None:
            held(g["values"], g["shape"], f"$.gradients.{k}.values")
    for k, entry in data["jacobian"]["entries"].items():
        at = f"$.jacobian.entries.{k}"
        if k not in data["inputs"]:
            raise DataError(f"derivgrad JSON: {at}: no input of that name")
        shape = entry["shape"]
        if shape != data["inputs"][k]["shape"] + out_shape:
            raise DataError(
                f"derivgrad JSON: {at}: shape {shape} is not input shape + output shape"
            )
        total += _size(shape) if entry["nonzero"] is not None else 0
        seen = set()
        for n, nz in enumerate(entry["nonzero"] or []):
            idx = tuple(nz["index"])
            if len(idx) != len(shape) or not all(1 <= i <= m for i, m in zip(idx, shape)):
                raise DataError(
                    f"derivgrad JSON: {at}.nonzero[{n}]: index {list(idx)} is outside "
                    f"1..{shape} (indices are 1-based)"
                )
            if idx in seen:
                raise DataError(f"derivgrad JSON: {at}.nonzero[{n}]: index {list(idx)} repeated")
            seen.add(idx)
    if total > MAX_ENTRIES:
        raise DataError(f"derivgrad JSON: {total:,} entries in all (limit {MAX_ENTRIES:,})")


class JsonWriter(Writer):
    """Not a document: the derivation itself, as data (no visitor of blocks)."""

    name = "json"
    extensions = (".json",)
    collects = False

    def derivation(self, d: Derivation, build: Any = None, standalone: bool = True) -> str:
        return dumps(d)


WRITER = JsonWriter
