"""``derivgrad shapes``: output shapes and parameter counts of a layer or of the LeNet, from
the op's own :meth:`~derivgrad.ops.base.Op.shapes`."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ._op_arguments import OPS, add_op_arguments


def _cmd_shapes(a: argparse.Namespace) -> None:
    from ..ops.base import Op
    from ..registry import get

    op = get(a.layer)
    given = {
        name: value
        for name, value in vars(a).items()
        if name not in ("layer", "command", "func") and value not in (None, False)
    }
    report = op.shapes(**given)
    if report is None:
        able = ", ".join(n for n, o in OPS().items() if type(o).shapes is not Op.shapes)
        raise UsageError(f"{op.name} has no shape report; try one of: {able}")
    print(report)


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    p = sub.add_parser(
        "shapes", help="output shapes and parameter counts of a layer or of the LeNet"
    )
    p.add_argument("layer", help="an op with a shape report (lenet, conv2d, the pools, linear)")
    if full:
        add_op_arguments(p)
    p.set_defaults(func=_cmd_shapes)
