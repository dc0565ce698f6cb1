"""``derivgrad check``: kernels against the symbolic ground truth and central differences."""

import argparse
import sys

from ..errors import UsageError
from ._define_arguments import add_define_arguments, defined_op, refuse_without_define


def _cmd_check(a):
    from ..checks.properties import check_op, table
    from ..registry import OPS, get

    refuse_without_define(a)
    if a.examples < 1:
        raise UsageError(f"--examples must be at least 1, got {a.examples}")
    if a.model is not None:
        return _check_model(a)
    if a.input is not None:
        raise UsageError("--input goes with --model")
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


def input_shape(text: str) -> tuple[int, ...]:
    """``1x28x28`` -> ``(1, 28, 28)``: one sample's shape, without the batch."""
    parts = text.lower().split("x")
    if not all(p.isdigit() and int(p) >= 1 for p in parts) or len(parts) > 4:
        raise UsageError(f"--input must be sizes >= 1 joined by x, such as 1x28x28; got {text!r}")
    return tuple(int(p) for p in parts)


def _check_model(a):
    from ..nn.check import check_network, table
    from ..nn.source import load

    if a.ops or a.define is not None:
        raise UsageError("give --model alone, without ops or --define")
    if a.batch < 1:
        raise UsageError(f"--batch must be at least 1, got {a.batch}")
    results = check_network(
        load(a.model),
        input_shape(a.input or "1x28x28"),
        batch=a.batch,
        seed=a.seed,
        examples=a.examples,
    )
    print(table(results))
    failed = [r for r in results if not r.passed]
    if failed:
        names = sorted({r.what for r in failed if r.what != "network"})
        print(
            f"{len(failed)} check(s) failed"
            + (f"; wrong: {'; '.join(names)}" if names else "")
            + f"; reproduce with --seed {a.seed}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    p = sub.add_parser(
        "check", help="check the kernels against symbolic ground truth and numerical gradients"
    )
    p.add_argument("ops", nargs="*", help="ops to check (default: all)")
    p.add_argument("--examples", type=int, default=8, help="hypothesis examples per op")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--model",
        metavar="FILE[:FUNC]",
        help="a network of one's own: a Python file defining model() (or FUNC) that returns "
        "derivgrad.nn layers; checks every gradient against central differences (float64) "
        "and each defined layer against its symbolic ground truth",
    )
    p.add_argument("--input", metavar="CxHxW", help="the model's input shape (default 1x28x28)")
    p.add_argument("--batch", type=int, default=2, help="batch size of the --model check")
    add_define_arguments(p)
    p.set_defaults(func=_cmd_check)
