"""``derivgrad bench``: kernel timings side by side with PyTorch at each thread count."""

import argparse

from ..errors import UsageError


def parse_thread_list(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``, each a valid count for :func:`kernels.set_threads`."""
    from derivgrad.kernels._threads import parse_threads

    items = [t.strip() for t in str(text).split(",")]
    if not all(items):
        raise UsageError(f"--threads must be a comma-separated list of counts, got {text!r}")
    try:
        counts = [parse_threads(t, "--threads") for t in items]
    except ValueError as e:
        raise UsageError(str(e)) from None
    if len(set(counts)) != len(counts):
        raise UsageError(f"--threads lists a count twice: {text!r}")
    return counts


def _cmd_bench(a):
    if a.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {a.repeats}")
    if a.limit is not None and a.limit < 64:
        raise UsageError(f"--limit must be >= 64 (one batch), got {a.limit}")
    if a.busy is not None:
        _cmd_busy(a)
        return
    from derivgrad.kernels import set_threads

    threads = parse_thread_list(a.threads) if a.threads is not None else None
    if threads is None:
        try:
            threads = [set_threads()]  # DERIVGRAD_THREADS, else all of Numba's threads
        except ValueError as e:
            raise UsageError(str(e)) from None
    if a.epoch and a.data is not None:
        from ..training.data import load

        load(a.data)  # a missing or corrupt dataset fails now, not after minutes of timings
    from ..bench.kernels import run
    from ..training.bench_step import print_breakdown

    run(a.repeats, threads, a.json, epoch=a.epoch, data=a.data, limit=a.limit)
    if a.step:
        for T in threads:
            set_threads(T)
            print_breakdown(T)


def _cmd_busy(a):
    if a.busy < 0:
        raise UsageError(f"--busy must be >= 0 (busy-loop processes), got {a.busy}")
    for given, option in ((a.threads, "--threads"), (a.step, "--step"), (a.data, "--data")):
        if given:
            raise UsageError(f"--busy measures its own columns; drop {option}")
    if a.limit is not None:
        raise UsageError("--busy measures its own columns; drop --limit")
    from ..bench.busy import run

    run(a.busy, a.repeats, a.json)


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    b = sub.add_parser(
        "bench",
        help="kernel timings side by side with PyTorch (or NumPy) at each thread count",
    )
    b.add_argument("--repeats", type=int, default=20, help="timed repeats per kernel (>= 1)")
    b.add_argument(
        "--threads",
        help="comma-separated thread counts, e.g. 1,2,4 (default: DERIVGRAD_THREADS, "
        "else all cores); sets Numba's and every BLAS pool to each in turn",
    )
    b.add_argument(
        "--no-epoch",
        dest="epoch",
        action="store_false",
        help="skip the LeNet epoch (timed per side in a process of its own)",
    )
    b.add_argument("--data", help="MNIST directory for --epoch (default: the embedded subset)")
    b.add_argument("--limit", type=int, help="--epoch on the first N training images only")
    b.add_argument(
        "--step", action="store_true", help="also break one LeNet training step down by layer"
    )
    b.add_argument(
        "--busy",
        type=int,
        metavar="N",
        help="instead: the LeNet step and each kernel beside N busy-loop processes (which "
        "stop by themselves), at the default, 1 thread, all cores, with spinning workers, "
        "and PyTorch's default",
    )
    b.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    b.set_defaults(func=_cmd_bench)
