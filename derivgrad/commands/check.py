"""``derivgrad check``: kernels against the symbolic ground truth and central differences."""

import argparse
import sys

from ..errors import UsageError
from ._define_arguments import add_define_arguments, defined_op, refuse_without_define


def _cmd_check(a):
    from ..checks import check_op, table
    from ..registry import OPS, get

    refuse_without_define(a)
    if a.examples < 1:
        raise UsageError(f"--examples must be at least 1, got {a.examples}")
    if a.define is not None:
        if a.ops:
            raise UsageError(f"give either ops ({' '.join(a.ops)}) or --define, not both")
        ops = [defined_op(a)]
    else:
        ops = [get(n) for n in a.ops] if a.ops else list(OPS.values())
    results = []
    for op in ops:
        # a slow op (the whole network) is one derivation of several seconds: one case
        results.append(check_op(op.name, examples=1 if op.slow else a.examples, seed=a.seed))
        print(table(results[-1:]).splitlines()[-1 if results[-1].passed else 1], file=sys.stderr)
    print(table(results))
    failed = [r for r in results if not r.passed]
    if failed:
        print(f"{len(failed)} op(s) failed; reproduce with --seed {a.seed}", file=sys.stderr)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    p = sub.add_parser(
        "check", help="check the kernels against symbolic ground truth and numerical gradients"
    )
    p.add_argument("ops", nargs="*", help="ops to check (default: all)")
    p.add_argument("--examples", type=int, default=8, help="hypothesis examples per op")
    p.add_argument("--seed", type=int, default=0)
    add_define_arguments(p)
    p.set_defaults(func=_cmd_check)
