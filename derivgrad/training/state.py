"""What a training checkpoint holds, and how it maps onto a network and an optimizer.

Arrays: ``p.NAME`` parameters, ``b.NAME`` buffers (batch-norm statistics), ``o.NAME``
optimizer state (SGD: ``v.*`` momentum buffers when momentum > 0; Adam: ``m.*``, ``v.*``).
Metadata (JSON): the :class:`~derivgrad.training.config.TrainConfig` it was written with, the
position (epoch, batch) of the next step to run, the optimizer's step count, the finished
epochs' history, the running sums of the unfinished epoch and the number of training
images.  Everything is validated on the way in (:func:`parse_meta`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..errors import CheckpointError, DerivgradError, ParamError
from .checkpoint import ArraySpec
from .config import CLASSES, IN_SHAPE, TrainConfig, from_mapping
from .model import SGD, Adam, Sequential, lenet

FORMAT = 2


class Position(NamedTuple):
    """The next step to run: batch ``batch`` of epoch ``epoch`` (both 0-based)."""

    epoch: int
    batch: int


class Tally(NamedTuple):
    """Running sums over the batches of the current epoch done so far."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0

    def add(self, loss: float, correct: int, n: int) -> Tally:
        return Tally(self.loss_sum + loss * n, self.correct + correct, self.seen + n)


@dataclass
class SavedState:
    """A checkpoint's metadata, validated."""

    config: TrainConfig
    position: Position
    steps: int
    tally: Tally
    history: list[dict[str, float]] = field(default_factory=list)
    n_train: int | None = None


def build(
    cfg: TrainConfig,
    seed: int | None = None,
    in_shape: tuple[int, ...] = IN_SHAPE,
    classes: int = CLASSES,
) -> tuple[Sequential, SGD | Adam]:
    """The network and optimizer ``cfg`` describes (weights seeded by ``cfg.seed``)."""
    if cfg.model is not None:
        net = build_model(
            cfg.model, cfg.seed if seed is None else seed, in_shape, classes, cfg.batch_size
        )
    else:
        net = lenet(
            cfg.filters, cfg.kernel, cfg.hidden, CLASSES, IN_SHAPE, cfg.batchnorm,
            cfg.seed if seed is None else seed,
        )  # fmt: skip
    params = net.named_params()
    if cfg.optimizer == "sgd":
        return net, SGD(params, cfg.lr, cfg.momentum, cfg.weight_decay)
    return net, Adam(params, cfg.lr, weight_decay=cfg.weight_decay)


def build_model(
    spec: str,
    seed: int,
    in_shape: tuple[int, ...] = IN_SHAPE,
    classes: int = CLASSES,
    batch: int | None = None,
) -> Sequential:
    """The network of one's own that ``--model spec`` names, built for images of
    ``in_shape`` labelled ``0 .. classes - 1``; with ``batch``, refused in one line if
    training it at that batch size would exhaust memory (:class:`derivgrad.nn.layers.Budget`)."""
    from ..nn import build as build_net
    from ..nn.source import load

    net = build_net(load(spec)(), in_shape, seed=seed, batch=batch)
    out = net.root.shape_out
    if len(out) != 1 or out[0] < classes:
        raise ParamError(
            f"--model {spec}: the network's output has shape {out}; training needs "
            f"({classes},) or more: one score per class"
        )
    return net


def architecture(net: Sequential) -> tuple[str, ...]:
    """The network layer by layer, as a checkpoint records it."""
    return tuple(
        f"{r.description} -> {'x'.join(map(str, r.shape))} ({r.params} params)"
        for r in net.summary()
    )


def arrays_of(net: Sequential, opt: SGD | Adam) -> dict[str, np.ndarray]:
    """Every array a checkpoint of (net, opt) holds, by member name."""
    out = {f"p.{k}": v for k, v in net.named_params().items()}
    out |= {f"b.{k}": v for k, v in net.named_buffers().items()}
    out |= {f"o.{k}": v for k, v in opt.state_dict().items() if k != "steps"}
    return out


def specs_of(net: Sequential, opt: SGD | Adam) -> dict[str, ArraySpec]:
    return {k: ArraySpec(v.shape, v.dtype) for k, v in arrays_of(net, opt).items()}


def restore(net: Sequential, opt: SGD | Adam, arrays: dict[str, np.ndarray], steps: int) -> None:
    """Copy checkpoint arrays (already checked against :func:`specs_of`) into net and opt."""
    for k, v in arrays_of(net, opt).items():
        v[...] = arrays[k]
    opt.steps = steps


def _int(meta: dict, key: str, where: str) -> int:
    v = meta.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise CheckpointError(f"{where}: metadata {key!r} must be an integer >= 0, got {v!r}")
    return v


def _history(v: Any, where: str) -> list[dict[str, float]]:
    ok = isinstance(v, list) and all(
        isinstance(h, dict)
        and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in h.values())
        for h in v
    )
    if not ok:
        raise CheckpointError(f"{where}: metadata 'history' is not a list of numeric records")
    return v


def _tally(v: Any, where: str) -> Tally:
    if (
        not isinstance(v, list)
        or len(v) != 3
        or not isinstance(v[0], numbers.Real)
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v[1:])
    ):
        raise CheckpointError(f"{where}: metadata 'partial' must be [loss sum, correct, seen]")
    return Tally(float(v[0]), v[1], v[2])


def parse_meta(meta: dict, where: str) -> SavedState:
    """Validate a checkpoint's metadata; :class:`CheckpointError` names what is wrong."""
    saved = meta.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: metadata has no 'config' object")
    # where the data and outputs were does not change what the state means
    saved = {k: v for k, v in saved.items() if k not in ("data", "checkpoint", "plot")}
    try:
        cfg = from_mapping(saved)
    except DerivgradError as e:
        raise CheckpointError(f"{where}: saved configuration refused: {e}") from None
    pos = Position(_int(meta, "epoch", where), _int(meta, "batch", where))
    history = _history(meta.get("history"), where)
    if len(history) != pos.epoch:
        raise CheckpointError(
            f"{where}: metadata has {len(history)} history records for {pos.epoch} epochs"
        )
    n_train = meta.get("n_train")
    if n_train is not None and (not isinstance(n_train, int) or n_train < 1):
        raise CheckpointError(f"{where}: metadata 'n_train' is {n_train!r}")
    return SavedState(
        cfg, pos, _int(meta, "steps", where), _tally(meta.get("partial"), where), history, n_train
    )


def meta_of(cfg: TrainConfig, state: SavedState) -> dict[str, Any]:
    """The JSON metadata for ``state`` (``cfg`` is the run's own configuration)."""
    return dict(
        format=FORMAT,
        arch=cfg.arch,
        config=cfg.to_dict(),
        epoch=state.position.epoch,
        batch=state.position.batch,
        steps=state.steps,
        history=state.history,
        partial=list(state.tally),
        n_train=state.n_train,
    )
