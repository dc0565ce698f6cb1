"""Training the course LeNet on MNIST with derivgrad's kernels (``derivgrad train``).

Determinism: epoch e shuffles with ``default_rng([seed, e])``, so a run resumed from a
checkpoint at any batch continues exactly as the uninterrupted run would.

Exactness under interruption: the *step* (forward, backward, optimizer update, running
sums, position) is the atomic unit.  SIGINT and SIGTERM are deferred to the boundary between
two steps (:mod:`derivgrad.training.interrupt`), where the state is consistent and is checkpointed;
the end of an epoch (evaluation, history, checkpoint) is one unit too.  A second signal
stops at once *without* saving, since the state may then be half-updated: the previous
checkpoint, consistent by construction, stands.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..atomic import write_output
from ..errors import CheckpointError, DivergedError, ParamError, UsageError
from . import checkpoint as ckpt
from . import data as mnist
from .config import EVAL_BATCH, TrainConfig, config, from_mapping
from .data import MNIST_MEAN, MNIST_STD, prepare
from .data_cifar import is_cifar_dir, load_cifar
from .data_npz import is_npz, load_npz
from .interrupt import Interrupts, deferred_interrupts
from .model import SGD, Adam, Sequential
from .predict import predict
from .state import (
    Position,
    SavedState,
    Tally,
    architecture,
    arrays_of,
    build,
    meta_of,
    parse_meta,
    restore,
    specs_of,
)

DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
Log = Callable[[str], Any]

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "TrainConfig",
    "config",
    "evaluate",
    "metrics_line",
    "plot",
    "predict",
    "prepare",
    "train",
]


def evaluate(
    net: Sequential, x: np.ndarray, y: np.ndarray, batch: int = EVAL_BATCH
) -> tuple[float, float]:
    """Mean loss and accuracy of ``net`` on ``(x, y)``, ``batch`` images at a time."""
    from derivgrad.kernels import softmax_cross_entropy_forward

    if len(y) == 0:
        raise ParamError("evaluate: no images to evaluate on")
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch):
        logits = net.forward(x[i : i + batch])
        l, p = softmax_cross_entropy_forward(logits, y[i : i + batch])
        loss += l * len(p)
        correct += int((p.argmax(1) == y[i : i + batch]).sum())
    return loss / len(y), correct / len(y)


def lr_at(cfg: TrainConfig, epoch: int, batch: int, n_batches: int) -> float:
    """The learning rate of step (epoch, batch): constant, or cosine-annealed to 0."""
    if cfg.schedule == "cosine":
        t = (epoch + batch / n_batches) / cfg.epochs
        return cfg.lr * 0.5 * (1 + np.cos(np.pi * t))
    return cfg.lr


@dataclass
class Data:
    """Training and test sets, prepared (float32 ``(N, 1, 28, 28)``, int64 labels)."""

    xtr: np.ndarray
    ytr: np.ndarray
    xte: np.ndarray
    yte: np.ndarray


def load_data(cfg: TrainConfig, log: Log) -> Data:
    if is_npz(cfg.data) or is_cifar_dir(cfg.data):
        what = "a .npz of images" if is_npz(cfg.data) else "CIFAR-10"
        if cfg.model is None:
            raise UsageError(f"--data {cfg.data}: {what} goes with --model")
        if cfg.normalize:
            raise UsageError(f"--normalize standardises with MNIST's statistics: not for {what}")
        x, y, xte, yte = (load_npz if is_npz(cfg.data) else load_cifar)(cfg.data)
        x, y = _limited(cfg, log, x, y)
        return Data(x, y, xte, yte)
    d = mnist.load(cfg.data)
    xtr, ytr = _limited(cfg, log, d["train_images"], d["train_labels"])
    prep = lambda a: prepare(a, cfg.normalize)  # noqa: E731
    return Data(
        prep(xtr), ytr.astype(np.int64), prep(d["test_images"]), d["test_labels"].astype(np.int64)
    )


def _limited(cfg: TrainConfig, log: Log, xtr: np.ndarray, ytr: np.ndarray) -> tuple:
    if cfg.limit is not None:
        if cfg.limit > len(ytr):
            log(f"--limit {cfg.limit} is more than the {len(ytr)} training images: using all")
        xtr, ytr = xtr[: cfg.limit], ytr[: cfg.limit]
    if len(ytr) < cfg.batch_size:
        raise ParamError(
            f"--batch-size {cfg.batch_size} is larger than the {len(ytr)} training images"
            f"{' (--limit)' if cfg.limit else ''}: not one full batch; lower --batch-size"
        )
    return xtr, ytr


# whether a one-process run updates each layer's parameters right after its backward
# (Sequential.loss_and_update) rather than in a pass after the whole backward; both give
# the same bits, the tests train both ways and compare
FOLD_UPDATE = True


@dataclass
class Run:
    """A training run's mutable state; :meth:`step` and :meth:`end_epoch` are atomic."""

    cfg: TrainConfig
    data: Data
    net: Sequential
    opt: SGD | Adam
    log: Log
    pos: Position = Position(0, 0)
    tally: Tally = Tally()
    history: list[dict[str, float]] = field(default_factory=list)
    in_unit: bool = False  # inside a step or an epoch's end: the state may be half-updated
    saved_at: tuple | None = None
    session_seen: int = 0  # samples processed in this process during the current epoch
    t_epoch: float = 0.0
    # data-parallel over MPI (derivgrad.training.distributed.Communicator); None: one process
    dist: Any = None
    stop_voted: bool = False  # under MPI: some rank asked to stop (agreed in the last step)
    intr: Interrupts | None = None

    @property
    def n_batches(self) -> int:
        return len(self.data.ytr) // self.cfg.batch_size

    def perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.data.ytr))

    def state(self) -> SavedState:
        return SavedState(
            self.cfg, self.pos, self.opt.steps, self.tally, self.history, len(self.data.ytr)
        )

    def save(self) -> None:
        """Checkpoint the current (consistent) state, once per position (under MPI every
        rank calls this at the same steps; rank 0 alone writes)."""
        key = (self.pos, self.opt.steps)
        if not self.cfg.checkpoint or self.saved_at == key:
            return
        arrays = arrays_of(self.net, self.opt)  # collective if the optimizer is sharded
        if self.dist is None or self.dist.is_root:
            ckpt.save(self.cfg.checkpoint, arrays, meta_of(self.cfg, self.state()))
        self.saved_at = key

    def step(self, perm: np.ndarray) -> float:
        """Apply batch ``pos.batch`` of the current epoch; returns its loss."""
        epoch, b = self.pos
        bs = self.cfg.batch_size
        idx = perm[b * bs : (b + 1) * bs]
        lr = lr_at(self.cfg, epoch, b, self.n_batches)
        self.in_unit = True
        self.opt.lr = lr

        def check(loss: float) -> None:
            if not np.isfinite(loss):
                raise DivergedError(
                    f"training diverged: the loss is {loss} at epoch {epoch + 1}, batch "
                    f"{b + 1} (lr {lr:g}); lower --lr. The last checkpoint, if any, is from "
                    f"before the divergence."
                )

        if self.dist is None:
            x, y = self.data.xtr[idx], self.data.ytr[idx]
            if FOLD_UPDATE:
                # One process: each layer's update runs right after its backward, while its
                # gradients are in cache; the same arithmetic as opt.step, so bit-identical
                # parameters (measured: no faster for the LeNet, whose gradients still sit
                # in L3 at the separate pass).
                loss, probs = self.net.loss_and_update(x, y, self.opt, check)
            else:  # the separate pass (tests compare both)
                loss, probs = self.net.loss_and_grads(x, y)
                check(loss)
                self.opt.step(self.net.named_grads())
            correct = int((probs.argmax(1) == y).sum())
        else:
            # Under MPI the gradients are complete only after the all-reduce that follows
            # the whole backward (and with --shard-optimizer each rank updates a slice of
            # every parameter after a reduce-scatter), so the update stays a separate pass.
            loss, correct, grads, self.stop_voted = self.dist.step(
                self.net, self.data.xtr, self.data.ytr, idx, self.stop_vote()
            )
            check(loss)
            self.opt.step(grads)
        self.tally = self.tally.add(float(loss), correct, len(idx))
        self.session_seen += len(idx)
        self.pos = Position(epoch, b + 1)
        self.in_unit = False
        return float(loss)

    def end_epoch(self) -> dict[str, float]:
        """Evaluate, record the epoch, move to the next one and checkpoint."""
        self.in_unit = True
        seconds = time.perf_counter() - self.t_epoch
        if self.dist is None:
            test_loss, test_acc = evaluate(self.net, self.data.xte, self.data.yte)
        else:  # rank 0 evaluates; every rank records its result
            self.dist.check_same_params(self.net.named_params())
            test_loss, test_acc = self.dist.root_call(
                evaluate, self.net, self.data.xte, self.data.yte
            )
        if not np.isfinite(test_loss):
            raise DivergedError(
                f"training diverged: the test loss is {test_loss} after epoch "
                f"{self.pos.epoch + 1}; lower --lr. The last checkpoint, if any, is from "
                f"before this epoch."
            )
        t = self.tally
        rec = dict(
            epoch=self.pos.epoch + 1,
            train_loss=t.loss_sum / max(t.seen, 1),
            train_acc=t.correct / max(t.seen, 1),
            test_loss=float(test_loss),
            test_acc=test_acc,
            seconds=seconds,
            samples_per_s=self.session_seen / max(seconds, 1e-9),
        )
        self.history = [*self.history, rec]
        self.pos, self.tally = Position(self.pos.epoch + 1, 0), Tally()
        self.save()
        self.in_unit = False
        return rec

    def stop_vote(self) -> bool:
        return self.intr is not None and self.intr.requested()

    def stop_requested(self) -> bool:
        """Whether to stop at this step boundary: this process's signal, or under MPI the
        ranks' agreement (every rank stops at the same step, so the checkpoint is whole)."""
        return self.stop_voted if self.dist is not None else self.stop_vote()


def _start(cfg: TrainConfig, data: Data, log: Log, dist: Any = None) -> Run:
    classes = int(max(data.ytr.max(), data.yte.max())) + 1
    make = lambda: build(cfg, in_shape=tuple(data.xtr.shape[1:]), classes=classes)  # noqa: E731
    # under MPI a network refused when built (a --model file's shapes, its memory) is one
    # verdict, said once by rank 0, not every rank's line and an MPI_Abort
    net, opt = make() if dist is None else dist.agree(make)
    if cfg.model is not None:
        cfg = cfg.replace(architecture=architecture(net))
    if dist is not None:  # synchronised batch norm; with --shard-optimizer a split update
        from .distributed import make_data_parallel

        opt = make_data_parallel(dist, net, opt)
    run = Run(cfg, data, net, opt, log, dist=dist)
    if cfg.resume:
        _resume(run)
    for row in net.summary():
        shape = "x".join(map(str, row.shape))
        log(f"  {row.description:34s} -> {shape:>10s}  {row.params:>9,d} params")
    log(
        f"  total {net.n_params():,d} parameters; "
        f"{len(data.ytr)} training / {len(data.yte)} test images"
    )
    return run


def _where(pos: Position, n_batches: int) -> str:
    """A position for people: 1-based epoch, batches done."""
    return f"epoch {pos.epoch + 1} after {pos.batch} of {n_batches} batches"


def _stopped_at(run: Run) -> str:
    """Where a stop left the run, for people: a position between epochs is named by what
    was done (a signal during the last evaluation stops a run that is already complete,
    not one "at epoch 2 after 0 batches" of a one-epoch run)."""
    pos, n, epochs = run.pos, run.n_batches, run.cfg.epochs
    if pos.epoch >= epochs:
        return f"the end of training: all {epochs} epochs and their evaluations are done"
    if pos.batch >= n:
        return f"the end of epoch {pos.epoch + 1} ({n} of {n} batches), before its evaluation"
    if pos.batch == 0 and pos.epoch > 0:
        return (
            f"the start of epoch {pos.epoch + 1} of {epochs}, after epoch {pos.epoch}'s evaluation"
        )
    return _where(pos, n)


def _resume(run: Run) -> None:
    cfg, where = run.cfg, str(run.cfg.checkpoint)
    found: dict[str, SavedState] = {}
    specs = specs_of(run.net, run.opt)  # (collective if the optimizer is sharded)

    def expect(meta: dict) -> dict[str, ckpt.ArraySpec]:
        found["state"] = s = parse_meta(meta, where)
        cfg.check_resume(s.config.to_dict(), where)
        return specs

    def load() -> tuple[dict[str, np.ndarray], SavedState]:
        return ckpt.load(where, expect)[0], found["state"]

    # under MPI rank 0 reads and every rank gets the state (no shared file system needed)
    arrays, s = load() if run.dist is None else run.dist.root_call(load)
    if s.n_train is not None and s.n_train != len(run.data.ytr):
        raise CheckpointError(
            f"{where}: checkpoint was trained on {s.n_train} images but this run has "
            f"{len(run.data.ytr)}; resume with the same data and --limit"
        )
    if (
        s.position.batch > run.n_batches
        or s.position.epoch > cfg.epochs
        or (s.position.epoch == cfg.epochs and s.position.batch > 0)
    ):
        raise CheckpointError(
            f"{where}: checkpoint is at {_where(s.position, run.n_batches)}, "
            f"beyond this run's --epochs {cfg.epochs}"
        )
    restore(run.net, run.opt, arrays, s.steps)
    if getattr(run.dist, "sharded", None) is not None:  # its state is spread over the ranks
        run.opt.load_state_dict(
            {k[2:]: v for k, v in arrays.items() if k.startswith("o.")} | {"steps": s.steps}
        )
    run.pos, run.tally, run.history = s.position, s.tally, list(s.history)
    run.saved_at = (run.pos, s.steps)
    run.log(f"resumed from {where} at {_where(run.pos, run.n_batches)}")


def _warm_up(run: Run) -> None:
    """Compile (or load from the cache) every kernel of a step on a tiny batch, so the
    first-call JIT cost is visible.  Evaluation mode and a zero gradient: no parameter or
    batch-norm statistic changes (exact resumption depends on that)."""
    t = time.perf_counter()
    run.log(
        "preparing kernels (compiled on the first run on a machine, loaded from the cache after)"
    )
    g = np.zeros_like(run.net.forward(run.data.xtr[:2], train=False))
    for layer in reversed(run.net.layers):
        g = layer.backward(g)
    run.log(f"  kernels ready in {time.perf_counter() - t:.1f} s")


class Stopped(KeyboardInterrupt):
    """Raised at a step boundary after a deferred signal, once the checkpoint is written."""

    all_ranks = True  # under MPI every rank stops at the same step: no abort needed


def _stop_if_asked(run: Run, intr: Interrupts) -> None:
    """At a step boundary: if a signal came, checkpoint this position and stop."""
    if not run.stop_requested():
        return
    run.in_unit = True  # a second signal during the save must not start another one
    run.save()
    run.in_unit = False
    where = _stopped_at(run)
    name = intr.name or "a signal to another rank"
    done = run.pos.epoch >= run.cfg.epochs
    if not run.cfg.checkpoint:
        tail = " (no --checkpoint given, nothing saved)"
    elif done:
        tail = f"; checkpoint written to {run.cfg.checkpoint}"
    else:
        tail = f"; checkpoint written to {run.cfg.checkpoint}, continue with --resume"
    run.log(f"interrupted ({name}) at {where}{tail}")
    raise Stopped(name)


def _epoch(run: Run, intr: Interrupts, progress: bool) -> None:
    epoch, perm = run.pos.epoch, run.perm(run.pos.epoch)
    bar = _bar(progress, run.n_batches, epoch, run.cfg.epochs, run.pos.batch)
    run.t_epoch, run.session_seen = time.perf_counter(), 0
    while run.pos.batch < run.n_batches:
        _stop_if_asked(run, intr)
        run.step(perm)
        if bar is not None:
            bar.update(1)
            if run.pos.batch % 20 == 1:
                t = run.tally
                bar.set_postfix(loss=f"{t.loss_sum / t.seen:.4f}", acc=f"{t.correct / t.seen:.4f}")
    if bar is not None:
        bar.close()
    _stop_if_asked(run, intr)
    r = run.end_epoch()
    run.log(
        f"epoch {r['epoch']}/{run.cfg.epochs}: train loss {r['train_loss']:.4f} acc "
        f"{r['train_acc']:.4f} | test loss {r['test_loss']:.4f} acc {r['test_acc']:.4f} | "
        f"{r['seconds']:.1f} s, {r['samples_per_s']:.0f} samples/s"
    )


def _loop(run: Run, progress: bool) -> None:
    with deferred_interrupts() as intr:
        run.intr = intr
        if run.dist is not None:  # a wait that hangs after a signal ends the job
            run.dist.stop_requested = intr.requested
        try:
            while run.pos.epoch < run.cfg.epochs:
                _epoch(run, intr, progress)
            _stop_if_asked(run, intr)
        except Stopped:
            raise
        except KeyboardInterrupt:
            if run.in_unit or intr.requested():  # a second signal, or inside a step
                why = "a second signal" if intr.requested() else "an interrupt inside a step"
                run.log(f"stopped at once by {why}: the last checkpoint written stands")
            elif run.dist is None:  # raised between steps by other code: consistent
                run.save()
                run.log(f"interrupted at {_stopped_at(run)}")
            raise


# not compared across ranks: options rank 0 alone uses (it writes the files; --resume state
# is broadcast from it), the data (compared by their checksum instead), and the architecture,
# which the run derives from --model (compared)
_RANK_LOCAL = ("checkpoint", "plot", "overwrite", "data", "architecture")


def rank_settings(cfg: TrainConfig, dist: Any) -> dict[str, Any]:
    """Every setting that changes the numbers, by its option name: all ranks must agree."""
    from .config import _opt

    out = {_opt(f.name): getattr(cfg, f.name) for f in fields(cfg) if f.name not in _RANK_LOCAL}
    out["--shard-optimizer"] = bool(getattr(dist, "shard_optimizer", False))
    return out


def data_fingerprint(data: Data) -> str:
    """The training and test sets' shapes and CRC-32s (after preparation, so that the same
    files prepared differently differ too)."""
    import zlib

    parts = (data.xtr, data.ytr, data.xte, data.yte)
    return ";".join(f"{a.shape}:{zlib.crc32(np.ascontiguousarray(a).data):08x}" for a in parts)


def check_ranks(cfg: TrainConfig, dist: Any) -> None:
    """Under MPI, the start-up checks as one collective verdict (a user error printed once,
    by rank 0): the batch splits evenly, every rank has the same settings, rank 0's outputs
    can be written."""

    def check() -> None:
        dist.check_batch(cfg.batch_size)
        dist.check_settings(rank_settings(cfg, dist))
        if dist.is_root:  # rank 0 alone writes
            cfg.check_outputs()

    dist.agree(check)


def _start_ranks(cfg: TrainConfig, dist: Any, log: Log) -> Data:
    """:func:`check_ranks`, then the data: it loads on every rank and is the same data on
    every rank."""
    check_ranks(cfg, dist)
    if dist.is_root:
        log(dist.describe())
    quiet: Log = log if dist.is_root else (lambda s: None)
    data = dist.agree(lambda: load_data(cfg, quiet))
    fingerprint = {"data (--data, --limit)": data_fingerprint(data)}
    dist.agree(lambda: dist.check_settings(fingerprint))
    return data


def train(
    cfg: TrainConfig | Mapping[str, Any],
    log: Log = print,
    progress: bool = True,
    dist: Any = None,
) -> tuple[dict[str, Any], Sequential]:
    """Run training as ``cfg`` says; returns (metrics of the last epoch, the network).

    ``dist``: a :class:`derivgrad.training.distributed.Communicator` for data-parallel training over
    MPI (``None``: one process).  Every rank takes its shard of each global batch and the
    gradients are averaged; rank 0 alone logs, evaluates and writes checkpoints.
    """
    cfg = cfg if isinstance(cfg, TrainConfig) else from_mapping(cfg)
    if dist is None:
        cfg.check_outputs()
        data = load_data(cfg, log)
    else:
        data = _start_ranks(cfg, dist, log)
        if not dist.is_root:
            log, progress = (lambda s: None), False
    run = _start(cfg, data, log, dist)
    _warm_up(run)
    t_start = time.perf_counter()
    if run.pos.epoch >= cfg.epochs:
        log(f"the checkpoint has already finished {cfg.epochs} epochs; nothing to train")
    _loop(run, progress)
    metrics: dict[str, Any] = dict(run.history[-1])
    metrics.update(
        total_seconds=time.perf_counter() - t_start,
        params=run.net.n_params(),
        epochs=cfg.epochs,
        history=run.history,
    )
    if cfg.plot and (dist is None or dist.is_root):
        plot(run.history, cfg.plot)
        log(f"plot written to {cfg.plot}")
    return metrics, run.net


def _bar(progress: bool, total: int, epoch: int, epochs: int, initial: int):
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False
    )


def plot(history: list[dict[str, float]], path: str) -> None:
    """Loss and accuracy curves, written to ``path`` (format from its suffix) by
    :func:`derivgrad.atomic.write_output`: atomically, or into a device such as /dev/null."""
    import io
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ext = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    if not ext:
        raise ParamError(f"--plot {path}: no file extension (.png, .pdf or .svg)")
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h["test_loss"] for h in history], "s-", label="test")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy"), a.legend(), a.set_title("loss")
    b.plot(ep, [100 * h["train_acc"] for h in history], "o-", label="train")
    b.plot(ep, [100 * h["test_acc"] for h in history], "s-", label="test")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy (%)"), b.legend(), b.set_title("accuracy")
    fig.tight_layout()
    try:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=120, format=ext)
    finally:
        plt.close(fig)
    write_output(path, buf.getvalue(), "--plot")


def metrics_line(metrics: dict[str, Any]) -> str:
    """The metrics as one JSON line (non-finite numbers as null: JSON has no NaN)."""
    out = {}
    for k, v in metrics.items():
        if k == "history":
            continue
        if isinstance(v, float):
            v = round(v, 6) if math.isfinite(v) else None
        out[k] = v
    return json.dumps(out, allow_nan=False)
