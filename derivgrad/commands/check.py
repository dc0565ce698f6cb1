"""``derivgrad check``: kernels against the symbolic ground truth and central differences."""

import sys

from ..errors import UsageError


def _cmd_check(a):
    from ..checks import check_op, table
    from ..registry import OPS

    if a.examples < 1:
        raise UsageError(f"--examples must be >= 1, got {a.examples}")
    names = a.ops or list(OPS)
    for n in names:
        if n not in OPS:
            raise UsageError(f"unknown op {n!r}; known ops: {', '.join(OPS)}")
    results = []
    for n in names:
        results.append(check_op(n, examples=1 if n == "lenet" else a.examples, seed=a.seed))
        print(table(results[-1:]).splitlines()[-1 if results[-1].passed else 1], file=sys.stderr)
    print(table(results))
    failed = [r for r in results if not r.passed]
    if failed:
        print(f"{len(failed)} op(s) failed; reproduce with --seed {a.seed}", file=sys.stderr)
    return 1 if failed else 0


def register(sub):
    p = sub.add_parser(
        "check", help="check the kernels against symbolic ground truth and numerical gradients"
    )
    p.add_argument("ops", nargs="*", help="ops to check (default: all)")
    p.add_argument("--examples", type=int, default=8, help="hypothesis examples per op")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_check)
