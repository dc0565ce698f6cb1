r"""A derivation as data (``derivgrad derive OP --format json``), read back with :func:`read`.

The document follows ``derivation.schema.json`` (beside this module; JSON Schema 2020-12)
and carries ``"version"``.  Expressions are strings that ``sympy.sympify`` reads back: every
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
import re
from importlib import resources
from typing import Any

import numpy as np
import sympy as sp

from ..symbolic import functions as _functions
from ..symbolic.derivation import Derivation

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


def _ident(base: str, idx: tuple[int, ...]) -> str:
    stem = re.sub(r"\W+", "_", base).strip("_") or "s"
    return "_".join([stem, *(str(i + 1) for i in idx)])


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
    groups = list(d.input_arrays.items())
    if _has_upstream(d):
        groups.append((UPSTREAM, d.upstream_array))
    for name, arr in groups:
        base = "delta" if name == UPSTREAM else name
        for idx in itertools.product(*(range(n) for n in arr.shape)):
            s = arr[idx]
            if not isinstance(s, sp.Symbol):
                continue
            ident = _ident(base, idx)
            table[ident] = {"input": name, "index": [i + 1 for i in idx], "name": s.name}
            rename[s] = sp.Symbol(ident)
    others = set().union(*(e.free_symbols for e in d.output_array.reshape(-1))) - set(rename)
    for s in sorted(others, key=lambda s: s.name):
        ident = _ident(s.name.replace("\\", ""), ())
        while ident in table:
            ident += "_"
        table[ident] = {"input": None, "index": [], "name": s.name}
        rename[s] = sp.Symbol(ident)
    for ident, entry in table.items():
        original = next(s for s, r in rename.items() if r.name == ident)
        # all of SymPy's assumptions (a symbol's identity includes them), commutative implied
        entry["assumptions"] = {
            k: v for k, v in sorted(original.assumptions0.items()) if k != "commutative" or not v
        }
    return table, rename


def _has_upstream(d: Derivation) -> bool:
    return any(isinstance(s, sp.Symbol) for s in d.upstream_array.reshape(-1))


def to_data(d: Derivation) -> dict[str, Any]:
    """The derivation as a JSON-ready dict (see the module docstring and the schema)."""
    from ..instance import complete, evaluate, kernel_comparison, substitutions
    from ..registry import get

    table, rename = _symbol_table(d)

    def expr(e: Any) -> str:
        return str(sp.sympify(e).xreplace(rename))

    op = get(d.op)
    output, grads = d.output_array, {k: d.grad_array(k) for k in d.grad_names}
    subexpressions: list[dict[str, str]] = []
    if op.slow:
        # a whole network: its expressions share large subexpressions (printed as a tree they
        # run to megabytes), so they are written once each, in order, as cse_0, cse_1, ...
        output, grads, subexpressions = _shared(output, grads, rename)

        def expr(e: Any) -> str:  # unsorted printing: the sorted one is quadratic here
            return sp.sstr(sp.sympify(e).xreplace(rename), order="none")

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
    flat = [sp.sympify(e).xreplace(rename) for a in arrays for e in a.reshape(-1)]
    reps, reduced = sp.cse(flat, symbols=sp.numbered_symbols("cse_"), order="none")
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
    v = sp.sympify(v)
    if v.is_Rational:
        return str(v)
    if v.is_number:
        return float(v)
    return str(v)


def dumps(d: Derivation) -> str:
    """The JSON text of ``d`` (indented, one trailing newline)."""
    return json.dumps(to_data(d), indent=1, ensure_ascii=False) + "\n"


def read(source: dict[str, Any] | str) -> dict[str, Any]:
    """Read a document of this format back into SymPy: ``{"inputs": {name: array},
    "output": array, "upstream": array | None, "gradients": {name: array},
    "jacobian": {name: array}}`` of object arrays (``jacobian`` leaves out an op whose
    Jacobians were not written: a whole network) (the symbols are the derivation's own:
    same names and assumptions)."""
    data: dict[str, Any] = json.loads(source) if isinstance(source, str) else source
    if data.get("version") != VERSION:
        raise ValueError(f"derivgrad JSON version {data.get('version')!r}; this reads {VERSION}")
    local: dict[str, Any] = dict(_kink_functions())
    for ident, entry in data["symbols"].items():
        local[ident] = sp.Symbol(entry["name"], **entry["assumptions"])

    shared: dict[sp.Symbol, sp.Expr] = {}
    for sub in data["subexpressions"]:  # in order: each may use the ones before it
        placeholder = sp.Symbol(sub["name"])
        shared[placeholder] = sp.sympify(sub["expression"], locals=local).xreplace(shared)
        local[sub["name"]] = placeholder

    def parse(s: str) -> sp.Expr:
        return sp.sympify(s, locals=local).xreplace(shared)

    def array(nested: Any, shape: list[int]) -> np.ndarray:
        flat = np.array(nested, dtype=object).reshape(-1) if shape else [nested]
        out = np.empty(len(flat), dtype=object)
        out[:] = [parse(s) for s in flat]
        return out.reshape(shape)

    jac = {}
    for k, entry in data["jacobian"]["entries"].items():
        if entry["nonzero"] is None:
            continue
        J = np.full(entry["shape"], sp.Integer(0), dtype=object)
        for nz in entry["nonzero"]:
            J[tuple(i - 1 for i in nz["index"])] = parse(nz["expression"])
        jac[k] = J
    up = data["upstream"]
    return {
        "inputs": {k: array(v["symbols"], v["shape"]) for k, v in data["inputs"].items()},
        "output": array(data["output"]["expressions"], data["output"]["shape"]),
        "upstream": None if up is None else array(up["symbols"], up["shape"]),
        "gradients": {k: array(v["expressions"], v["shape"]) for k, v in data["gradients"].items()},
        "jacobian": jac,
    }
