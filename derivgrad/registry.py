"""One registry of ops: the built-in ones (every module of :mod:`derivgrad.ops` that exports
``OPS``) and those a user defines.  The command line, the renderer, ``derivgrad check`` and the
tests iterate it through the :class:`~derivgrad.ops.base.Op` protocol and never name an op."""

from __future__ import annotations

import importlib
import pkgutil
import sys

from . import ops as _ops_package
from .errors import ParamError
from .ops.base import Op


def _builtin() -> dict[str, Op]:
    found: dict[str, Op] = {}
    for info in sorted(pkgutil.iter_modules(_ops_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{_ops_package.__name__}.{info.name}")
        for op in getattr(module, "OPS", ()):
            if op.name in found:
                raise RuntimeError(f"op {op.name!r} is defined twice ({module.__name__})")
            found[op.name] = op
    # the order of the course notes' worked problems, for listings and documents
    return dict(sorted(found.items(), key=lambda kv: _problem_key(kv[1].problems)))


def _problem_key(problems: str) -> tuple[int, str]:
    first = problems.split(",")[0].strip()
    digits = "".join(ch for ch in first if ch.isdigit())
    return (int(digits) if digits else 10**6, first)


OPS: dict[str, Op] = _builtin()


def get(name: str) -> Op:
    """The op called ``name`` (``-`` and ``_`` are the same; case does not matter)."""
    if not isinstance(name, str):
        raise ParamError(f"an op name must be a string, got {name!r}; known ops: {', '.join(OPS)}")
    key = name.replace("-", "_").lower()
    if key not in OPS:
        raise ParamError(f"unknown op {name!r}; known ops: {', '.join(OPS)}")
    return OPS[key]


def register(op: Op) -> Op:
    """Add a user-defined op (same protocol as the built-ins); a built-in name cannot be taken."""
    if not isinstance(op, Op):
        raise TypeError(f"register() takes an Op, got {type(op).__name__}")
    existing = OPS.get(op.name)
    if (
        existing is not None
        and existing is not op
        and type(existing).__module__.startswith(_ops_package.__name__)
    ):
        raise ParamError(f"{op.name!r} is a built-in op; choose another name")
    OPS[op.name] = op
    return op


def _adopt_pending() -> None:
    """Register the ops :func:`derivgrad.define` made before this module was imported."""
    notation = sys.modules.get("derivgrad.notation")
    if notation is not None:
        for op in notation.PENDING:
            register(op)
        notation.PENDING.clear()


_adopt_pending()
