"""``derivgrad train``: train the course LeNet on MNIST."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..training.config import TrainConfig


def _threads(n: int | None, default: int | None = None) -> None:
    # derivgrad.kernels.set_threads: Numba's pool and every BLAS pool, the same way as bench;
    # None without MPI: DERIVGRAD_THREADS or all cores
    from derivgrad.kernels import set_threads
    from derivgrad.kernels._threads import max_threads

    if n is None and default is not None:  # under MPI: the node's cores shared among its ranks
        n = min(default, max_threads())
    try:
        set_threads(n, name="--threads")
    except ValueError as e:
        raise UsageError(str(e)) from None


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    """The :class:`~derivgrad.training.config.TrainConfig` the options describe (validated)."""
    from ..training.config import TrainConfig

    names = [f for f in TrainConfig.__dataclass_fields__ if f not in ("data", "architecture")]
    return TrainConfig(data=a.data, **{k: getattr(a, k) for k in names})


def _cmd_train(a: argparse.Namespace) -> None:
    from ..training import data as mnist
    from ..training.distributed import abort_on_error, detect
    from ..training.train import metrics_line, train

    cfg = config_from_args(a)  # every value checked before anything is read or downloaded
    # under an MPI launcher (or --mpi): the communicator; None (and no mpi4py import) otherwise
    dist = detect(force=a.mpi)
    if dist is not None:
        from ..training.train import check_ranks

        dist.shard_optimizer = a.shard_optimizer
        check_ranks(cfg, dist)  # one verdict: rank 0 says it on its own line, all exit 2
    else:
        cfg.check_outputs()
    _threads(a.threads, dist.default_threads() if dist is not None else None)
    if a.download:
        cfg = cfg.replace(data=str(mnist.download(a.data, log=lambda s: print(s, file=sys.stderr))))
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    with abort_on_error(dist):
        metrics, _ = train(cfg, log=log, progress=not a.quiet and sys.stderr.isatty(), dist=dist)
    if dist is not None and not dist.is_root:
        return
    log(f"test accuracy {100 * metrics['test_acc']:.2f}% after {metrics['epochs']} epochs")
    print(metrics_line(metrics))


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    from ..training.config import TrainConfig

    D = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train the course LeNet on MNIST with derivgrad's kernels",
        description="Train the course LeNet. Without --data it uses the MNIST subset embedded "
        "in the package (10,000 training, 2,000 test images). Ctrl-C or SIGTERM stops at the "
        "end of the current step and checkpoints there; --resume continues bit-exactly.",
    )
    p.add_argument(
        "--data", help="directory with the four MNIST IDX files (gzip or not) or a mnist.pkl.gz"
    )
    p.add_argument(
        "--download", action="store_true", help="download MNIST into --data or the user cache first"
    )
    _add_settings(p, D)
    p.set_defaults(func=_cmd_train)


def _add_settings(p: argparse.ArgumentParser, D) -> None:
    from ..training.config import OPTIMIZERS, SCHEDULES

    p.add_argument("--epochs", type=int, default=D.epochs)
    p.add_argument("--batch-size", type=int, default=D.batch_size)
    p.add_argument("--lr", type=float, default=D.lr)
    p.add_argument("--momentum", type=float, default=D.momentum)
    p.add_argument("--weight-decay", type=float, default=D.weight_decay)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=D.optimizer)
    p.add_argument("--schedule", choices=SCHEDULES, default=D.schedule)
    p.add_argument(
        "--normalize", action="store_true", help="standardise pixels with MNIST's mean and std"
    )
    p.add_argument("--seed", type=int, default=D.seed, help="seed (>= 0) of weights and order")
    p.add_argument(
        "--checkpoint", help="checkpoint file, written atomically after each epoch and on Ctrl-C"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue exactly from --checkpoint; --epochs, --lr, --weight-decay, --schedule, "
        "--data (same images) and --plot may change, other settings must match",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --checkpoint from scratch"
    )
    p.add_argument("--plot", help="write loss and accuracy curves to this .png, .pdf or .svg")
    p.add_argument(
        "--threads",
        type=int,
        help="threads per process (default: all cores; under MPI, the node's cores divided "
        "among its ranks)",
    )
    p.add_argument(
        "--shard-optimizer",
        action="store_true",
        help="under MPI: each rank updates 1/P of the parameters (reduce-scatter, update, "
        "all-gather) instead of all of them",
    )
    p.add_argument(
        "--mpi",
        action="store_true",
        help="use MPI even where no launcher is detected (mpiexec, mpirun and srun are "
        "detected); see the README",
    )
    p.add_argument("--filters", type=int, default=D.filters)
    p.add_argument("--hidden", type=int, default=D.hidden)
    p.add_argument("--kernel", type=int, default=D.kernel)
    p.add_argument(
        "--batchnorm", action="store_true", help="batch normalisation after the convolution"
    )
    p.add_argument(
        "--model",
        metavar="FILE[:FUNC]",
        help="train a network of one's own: a Python file defining model() (or FUNC) that "
        "returns derivgrad.nn layers (the LeNet options then do not apply)",
    )
    p.add_argument("--limit", type=int, help="use only the first N (>= 1) training images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
