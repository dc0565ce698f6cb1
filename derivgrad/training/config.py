"""The settings of a training run, validated in one place (:class:`TrainConfig`).

The command line builds a :class:`TrainConfig` from its options and :func:`derivgrad.training.train.
train` takes one; every value is checked when the object is made, so a bad value is refused
before any data is read or any weight allocated, with the option's name in the message.
Output paths (checkpoint, plot) are checked separately by :meth:`TrainConfig.check_outputs`,
which touches the file system, also before the first step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import check_output, resolve
from ..errors import CheckpointError, ParamError, UsageError
from .model import lenet_rows

IN_SHAPE = (1, 28, 28)
CLASSES = 10
EVAL_BATCH = 1000
# A run whose weights, gradients, optimizer state and activations would need more than
# this is refused before anything is allocated (the default LeNet needs about 60 MB).
MAX_TRAIN_BYTES = 4 * 2**30
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine")
PLOT_FORMATS = (".png", ".pdf", ".svg")
ARCH_KEYS = ("filters", "kernel", "hidden", "batchnorm")
# Settings a resumed run must share with its checkpoint: each changes what the saved state
# or the saved position means (the batch order comes from seed, limit and batch size).
# epochs, lr, weight_decay, schedule, data, plot may change (documented under --resume).
RESUME_FIXED = (*ARCH_KEYS, "optimizer", "momentum", "batch_size", "seed", "limit", "normalize")


def training_bytes(params: int, activations: int, batch: int, itemsize: int = 4) -> int:
    """About what a run holds: every parameter four times (weights, gradients, two optimizer
    states) and every activation value of a sample three times (the output, the input a
    layer keeps for its backward, the gradient) for the larger of the training batch and
    the evaluation batch."""
    return itemsize * (4 * params + 3 * max(batch, EVAL_BATCH) * activations)


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def _int(name: str, v: Any, lo: int, hi: int | None = None) -> int:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise ParamError(f"{_opt(name)} must be an integer, got {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ParamError(f"{_opt(name)} must be {bound}, got {v}")
    return int(v)


def _float(name: str, v: Any, lo: float, hi: float | None = None, lo_open: bool = False) -> float:
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        raise ParamError(f"{_opt(name)} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ParamError(f"{_opt(name)} must be finite, got {v}")
    if (v <= lo if lo_open else v < lo) or (hi is not None and v >= hi):
        low = f"({lo}" if lo_open else f"[{lo}"
        high = f"{hi})" if hi is not None else "inf)"
        raise ParamError(f"{_opt(name)} must be in {low}, {high}, got {v}")
    return v


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (the command line's options, same names)."""

    data: str | None = None
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint: str | None = None
    resume: bool = False
    overwrite: bool = False
    plot: str | None = None
    filters: int = 20
    kernel: int = 5
    hidden: int = 500
    batchnorm: bool = False
    normalize: bool = False
    schedule: str = "constant"
    limit: int | None = None
    # a network of one's own: "net.py" or "net.py:function" (derivgrad.nn); None: the LeNet
    model: str | None = None
    # the built --model network, layer by layer (recorded in checkpoints; set by the run)
    architecture: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        for k in ("epochs", "batch_size", "filters", "kernel", "hidden"):
            set_(k, _int(k, getattr(self, k), 1))
        set_("seed", _int("seed", self.seed, 0, 2**63 - 1))
        if self.limit is not None:
            set_("limit", _int("limit", self.limit, 1))
        set_("lr", _float("lr", self.lr, 0.0, lo_open=True))
        set_("momentum", _float("momentum", self.momentum, 0.0, 1.0))
        set_("weight_decay", _float("weight_decay", self.weight_decay, 0.0))
        for k, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            if getattr(self, k) not in choices:
                raise ParamError(
                    f"{_opt(k)} must be one of {', '.join(choices)}, got {getattr(self, k)!r}"
                )
        for k in ("resume", "overwrite", "batchnorm", "normalize"):
            if not isinstance(getattr(self, k), bool):
                raise ParamError(f"{_opt(k)} must be True or False, got {getattr(self, k)!r}")
        for k in ("data", "checkpoint", "plot"):
            v = getattr(self, k)
            if v is not None:
                if not isinstance(v, (str, os.PathLike)) or os.fspath(v) == "":
                    raise ParamError(f"{_opt(k)} must be a non-empty path, got {v!r}")
                set_(k, os.fspath(v))
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise ParamError(f"--model must be a file name, got {self.model!r}")
        if self.architecture is not None:
            a = self.architecture
            if not isinstance(a, (list, tuple)) or not all(isinstance(r, str) for r in a):
                raise ParamError(f"architecture must be a list of layer lines, got {a!r}")
            set_("architecture", tuple(a))
        self._check_combinations()
        if self.model is None:  # a --model network is priced while it is built (nn.Budget)
            self._check_size()

    def _check_combinations(self) -> None:
        if self.resume and not self.checkpoint:
            raise UsageError("--resume needs --checkpoint PATH")
        if self.resume and self.overwrite:
            raise UsageError(
                "--resume continues the checkpoint and --overwrite replaces it; pick one"
            )
        if self.plot is not None:
            ext = os.path.splitext(self.plot)[1].lower()
            if ext not in PLOT_FORMATS:
                raise UsageError(
                    f"--plot {self.plot}: "
                    + (f"unsupported format {ext!r}" if ext else "no file extension")
                    + f"; use one of {', '.join(PLOT_FORMATS)}"
                )
        outs = [(k, getattr(self, k)) for k in ("checkpoint", "plot") if getattr(self, k)]
        if len(outs) == 2 and resolve(outs[0][1]) == resolve(outs[1][1]):
            raise UsageError(f"--plot and --checkpoint are the same file {self.plot}")
        for k, v in outs:
            if self.data and resolve(v) == resolve(self.data):
                raise UsageError(f"--{k} {v} would overwrite the --data file")

    def _check_size(self) -> None:
        rows = lenet_rows(self.filters, self.kernel, self.hidden, CLASSES, IN_SHAPE, self.batchnorm)
        params = sum(r.params for r in rows)
        act = sum(math.prod(r.shape) for r in rows) + math.prod(IN_SHAPE)
        need = training_bytes(params, act, self.batch_size)
        if need > MAX_TRAIN_BYTES:
            raise ParamError(
                f"this network ({params:,d} parameters, batch {self.batch_size}) would need "
                f"about {need / 2**30:.1f} GiB, over the {MAX_TRAIN_BYTES / 2**30:.0f} GiB "
                f"limit; lower --hidden, --filters or --batch-size"
            )

    @property
    def arch(self) -> dict[str, Any]:
        """The settings that decide the network's shapes (saved in every checkpoint)."""
        arch = {k: getattr(self, k) for k in ARCH_KEYS}
        return arch | ({"layers": list(self.architecture)} if self.architecture else {})

    def to_dict(self) -> dict[str, Any]:
        """The settings as saved in a checkpoint (without the per-invocation flags)."""
        d = dataclasses.asdict(self)
        for k in ("resume", "overwrite"):
            d.pop(k)
        for k in ("model", "architecture"):  # the LeNet's checkpoints stay as they were
            if d[k] is None:
                d.pop(k)
            elif k == "architecture":
                d[k] = list(d[k])
        return d

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def check_outputs(self) -> None:
        """Refuse, before any work, a checkpoint or plot path that could not be written
        (missing directory, a directory, a device, a read-only file or place, a file this run
        reads), and an existing checkpoint that neither --resume nor --overwrite allows
        touching.  A plot may go to a device or FIFO (``/dev/null``), a checkpoint may not."""
        inputs: list[str | os.PathLike] = []
        if self.data:
            d = Path(self.data)
            inputs = [d]
            if d.is_dir():
                # an unreadable directory is the data loader's error to report, not this one
                with contextlib.suppress(OSError):
                    inputs += [f for f in d.iterdir() if f.is_file()]
        if self.checkpoint:
            if self.resume and not resolve(self.checkpoint).exists():
                raise CheckpointError(f"{self.checkpoint}: no such checkpoint to --resume")
            target = check_output(self.checkpoint, "--checkpoint", inputs=inputs)
            if not (self.resume or self.overwrite) and target.exists():
                raise UsageError(
                    f"--checkpoint {self.checkpoint}: exists; pass --resume to continue it "
                    f"or --overwrite to replace it"
                )
        if self.plot:
            ck = [self.checkpoint] if self.checkpoint else []
            check_output(self.plot, "--plot", inputs=[*inputs, *ck], stream_ok=True)

    def check_resume(self, saved: Any, where: str) -> None:
        """Refuse to resume a checkpoint written with settings that change what its state
        means; ``saved`` is the configuration stored in it."""
        if not isinstance(saved, dict):
            raise CheckpointError(f"{where}: checkpoint has no saved configuration")
        mine_arch, saved_arch = list(self.architecture or []), saved.get("architecture") or []
        if mine_arch != saved_arch:
            if not saved_arch or not mine_arch:
                what = "a --model network" if saved_arch else "the LeNet"
                raise CheckpointError(
                    f"{where}: checkpoint holds {what}, not this run's network; resume with "
                    f"the network it was written with"
                )
            diff = next(
                (i for i, (a, b) in enumerate(zip(saved_arch, mine_arch)) if a != b),
                min(len(saved_arch), len(mine_arch)),
            )
            has = lambda rows: rows[diff] if diff < len(rows) else "no layer"  # noqa: E731
            raise CheckpointError(
                f"{where}: checkpoint holds another network: its layer {diff + 1} is "
                f"{has(saved_arch)!r}, this run's is {has(mine_arch)!r}"
            )
        for k in RESUME_FIXED:
            if k not in saved:
                raise CheckpointError(f"{where}: checkpoint does not record its {_opt(k)}")
            mine = getattr(self, k)
            if k == "momentum" and self.optimizer == "adam":
                continue  # Adam does not use momentum
            if saved[k] != mine or type(saved[k]) is not type(mine):
                raise CheckpointError(
                    f"{where}: checkpoint was written with {_opt(k)} {saved[k]!r} but this run "
                    f"has {mine!r}; resume with the same value (only --epochs, --lr, "
                    f"--weight-decay, --schedule, --data and --plot may change)"
                )


def from_mapping(values: Mapping[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a mapping; an unknown name is refused by name."""
    if not isinstance(values, Mapping):
        raise ParamError(f"training settings must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(map(str, set(values) - known))
    if unknown:
        raise ParamError(
            f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return TrainConfig(**values)


def config(**overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from keyword overrides (``None`` means the default)."""
    return from_mapping({k: v for k, v in overrides.items() if v is not None})
