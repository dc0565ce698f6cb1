"""``derivgrad bench``: kernel timings side by side with PyTorch."""

import argparse


def _cmd_bench(a):
    from ..bench import run
    from ..errors import UsageError

    if a.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {a.repeats}")
    if a.threads is not None:
        import numba

        top = numba.config.NUMBA_NUM_THREADS
        if not 1 <= a.threads <= top:
            raise UsageError(f"--threads must be in 1..{top} (NUMBA_NUM_THREADS), got {a.threads}")

    run(a.repeats, a.threads, a.json)


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    b = sub.add_parser("bench", help="kernel timings side by side with PyTorch (or NumPy)")
    b.add_argument("--repeats", type=int, default=20)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    b.set_defaults(func=_cmd_bench)
