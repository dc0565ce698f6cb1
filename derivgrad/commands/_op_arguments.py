"""Command-line options generated from the ops' declared parameters
(:attr:`derivgrad.ops.base.Op.params`): ``--NAME VALUE`` for ints and sizes, ``--no-NAME`` for
a boolean that defaults to true.  One option serves every op that declares the name."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError


def OPS() -> dict[str, Any]:  # noqa: N802  (the registry's name)
    from ..registry import OPS as ops

    return ops


def _declared() -> dict[str, tuple[str, str]]:
    """name -> (kind, help) over every op; the first op to declare a name gives its help."""
    out: dict[str, tuple[str, str]] = {}
    for op in OPS().values():
        for p in op.params:
            out.setdefault(p.name, (p.kind, p.help))
    return out


def add_op_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("op parameters (each op takes its own; see its docs)")
    for name, (kind, help_) in _declared().items():
        if kind == "bool":
            group.add_argument(f"--no-{name}", action="store_true", help=f"do not {help_}")
        elif kind == "size":
            group.add_argument(f"--{name}", help=f"{help_}")
        else:
            group.add_argument(f"--{name}", type=int, help=help_)


def op_arguments(a: argparse.Namespace, op: Any) -> dict[str, Any]:
    """The options given on the command line that ``op`` takes; an option it does not take
    is an error naming what it does take (silently ignoring it would mislead)."""
    declared = {p.name: p.kind for p in op.params}
    params: dict[str, Any] = {}
    for name, (kind, _help) in _declared().items():
        given = getattr(a, f"no_{name}" if kind == "bool" else name, None)
        if given in (None, False):
            continue
        if name not in declared:
            takes = ", ".join(f"--{n}" for n in declared) or "no parameters"
            raise UsageError(f"{op.name} does not take --{name}; it takes {takes}")
        params[name] = False if kind == "bool" else given
    return params
