"""One forward and backward pass of a built network, every module's input, output and
gradients recorded on the way: what ``derivgrad derive --model`` prints as the network's
numbers and holds each layer's derivation to.  The pass is the network's own
(:meth:`Network.loss_and_grads`, the kernels); the record is taken by wrapping each module's
``forward``/``backward`` for the one pass, never by a second implementation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .layers import Module
from .network import Network


@dataclass
class Record:
    """One module's part of the pass, one sample: ``x`` in, ``y`` out, ``dy`` = ∂L/∂y,
    ``dx`` = ∂L/∂x and its parameters' gradients (all copies, batch axis kept)."""

    module: Module
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    dy: np.ndarray | None = None
    dx: np.ndarray | None = None
    grads: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Trace:
    loss: float
    probs: np.ndarray  # softmax of the logits
    records: list[Record]  # every module of the tree, in pre-order (a container before its layers)

    def of(self, m: Module) -> Record:
        for r in self.records:
            if r.module is m:
                return r
        raise KeyError(m.name)


def modules(root: Module) -> Iterator[tuple[Module, int]]:
    """Every module of the tree with its depth, a container before what it holds."""
    stack = [(root, 0)]
    while stack:
        m, depth = stack.pop()
        yield m, depth
        stack.extend((c, depth + 1) for c in reversed(getattr(m, "children", [])))


def trace(net: Network, x: np.ndarray, labels: np.ndarray) -> Trace:
    """Run ``net.loss_and_grads(x, labels)`` once, recording every module."""
    tree = [m for m, _ in modules(net.root)]
    records = [Record(m) for m in tree]
    for m in tree:  # the first layer's input gradient too: the document prints ∂L/∂x
        inner = getattr(m, "inner", None)
        if inner is not None and hasattr(inner, "need_dx"):
            inner.need_dx = True
    for m, r in zip(tree, records):  # an instance attribute shadows the method for one pass
        setattr(m, "forward", _recording_forward(m, r))  # noqa: B010
        setattr(m, "backward", _recording_backward(m, r))  # noqa: B010
    try:
        loss, probs = net.loss_and_grads(x, labels)
    finally:
        for m in tree:
            delattr(m, "forward")
            delattr(m, "backward")
    return Trace(float(loss), np.array(probs), records)


def _recording_forward(m: Module, r: Record) -> Callable[[np.ndarray, bool], Any]:
    forward = type(m).forward

    def record(a: np.ndarray, train: bool) -> Any:
        r.x = a.copy()
        y = forward(m, a, train)
        r.y = np.array(y)
        return y

    return record


def _recording_backward(m: Module, r: Record) -> Callable[[np.ndarray], Any]:
    backward = type(m).backward

    def record(dy: np.ndarray) -> Any:
        r.dy = np.array(dy)
        dx = backward(m, dy)
        r.dx = None if dx is None else np.array(dx)
        r.grads = {k: np.array(v) for k, v in m.grads.items()}
        return dx

    return record
