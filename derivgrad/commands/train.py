"""``derivgrad train``: train the course LeNet on MNIST."""

import argparse
import signal
import sys

from ..errors import UsageError


def _cmd_train(a):
    import numba

    from .. import data as mnist
    from ..distributed import abort_on_error, detect
    from ..train import config, metrics_line, train

    for name in ("epochs", "batch_size", "filters", "hidden", "kernel"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    for name in ("lr",):
        if not getattr(a, name) > 0:
            raise UsageError(f"--lr must be positive, got {a.lr}")
    if a.momentum < 0 or a.momentum >= 1:
        raise UsageError(f"--momentum must be in [0, 1), got {a.momentum}")
    if a.resume and not a.checkpoint:
        raise UsageError("--resume needs --checkpoint PATH")
    if a.threads is not None and a.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {a.threads}")
    # under an MPI launcher (or --mpi): the communicator; None (and no mpi4py import) otherwise
    dist = detect(force=a.mpi)
    threads = a.threads or (dist.default_threads() if dist is not None else None)
    if threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    data_dir = a.data
    if a.download:
        data_dir = str(mnist.download(a.data))
    cfg = config(
        data=data_dir,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        momentum=a.momentum,
        optimizer=a.optimizer,
        weight_decay=a.weight_decay,
        seed=a.seed,
        checkpoint=a.checkpoint,
        resume=a.resume,
        plot=a.plot,
        filters=a.filters,
        hidden=a.hidden,
        kernel=a.kernel,
        batchnorm=a.batchnorm,
        normalize=a.normalize,
        schedule=a.schedule,
        limit=a.limit,
    )
    # SIGTERM behaves like Ctrl-C: the current position is checkpointed before exiting
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    log = lambda s: print(s, file=sys.stderr)
    if dist is not None:
        dist.shard_optimizer = a.shard_optimizer
        try:  # the same verdict on every rank: rank 0 says it, all exit with status 2
            dist.check_batch(a.batch_size)
        except UsageError:
            if dist.is_root:
                raise
            sys.exit(2)
    with abort_on_error(dist):
        metrics, _ = train(cfg, log=log, progress=not a.quiet and sys.stderr.isatty(), dist=dist)
    if dist is not None and not dist.is_root:
        return
    log(f"test accuracy {100 * metrics['test_acc']:.2f}% after {metrics['epochs']} epochs")
    print(metrics_line(metrics))


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    from ..train import DEFAULTS

    p = sub.add_parser(
        "train",
        help="train the course LeNet on MNIST with derivgrad's kernels",
        description="Train the course LeNet. Without --data it uses the MNIST subset embedded "
        "in the package (10,000 training, 2,000 test images).",
    )
    p.add_argument(
        "--data", help="directory with the four MNIST IDX files (gzip or not) or a mnist.pkl.gz"
    )
    p.add_argument(
        "--download", action="store_true", help="download MNIST into --data or the user cache first"
    )
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    p.add_argument(
        "--normalize", action="store_true", help="standardise pixels with MNIST's mean and std"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--checkpoint", help="checkpoint file, written atomically after each epoch and on Ctrl-C"
    )
    p.add_argument("--resume", action="store_true", help="continue exactly from --checkpoint")
    p.add_argument("--plot", help="write loss and accuracy curves to this PNG")
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
    p.add_argument("--filters", type=int, default=20)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument(
        "--batchnorm", action="store_true", help="batch normalisation after the convolution"
    )
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
