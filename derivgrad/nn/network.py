"""A built network: the modules of :mod:`derivgrad.nn` as the training runs them.

:class:`Network` is a :class:`derivgrad.training.model.Sequential` (the class the course LeNet
is), so the training loop, checkpoints and evaluation take it as they take the LeNet.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from ..errors import ParamError
from ..training import model as M
from .layers import BUDGET, Budget, Module, OpFace, Sequential, Shape


class Network(M.Sequential):
    """``forward``, ``backward``, ``loss_and_grads`` (softmax cross-entropy), named
    parameters, gradients and buffers of a built network."""

    root: Module
    budget: Budget | None  # what the network was priced at (built with a batch size)

    def summary(self) -> list[M.LayerRow]:
        """One row per computing layer (a container's layers named by their path)."""
        return [
            M.LayerRow(
                f"{m.name} {m.describe()}", m.shape_out, sum(int(v.size) for v in m.params.values())
            )
            for m in self.root.leaves()
        ]

    def loss_face(self, label: int) -> OpFace:
        """The op whose derivation is the loss :meth:`loss_and_grads` trains with, for one
        sample of class ``label`` (1-based), its input ``z`` the network's output."""
        return OpFace(
            "softmax_cross_entropy", dict(classes=self.root.shape_out[0], label=label), "z"
        )

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """The input gradient; every parameter's gradient into ``named_grads()``."""
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy


def build(
    module: Module,
    in_shape: Shape,
    seed: int = 0,
    dtype: Any = np.float32,
    config: dict | None = None,
    batch: int | None = None,
) -> Network:
    """Build ``module`` (usually ``model()``) for samples of ``in_shape`` (without the batch):
    every layer's input shape is checked, a mismatch raised in one line naming the layer and
    both shapes; parameters initialised from ``seed`` in ``dtype``.  With ``batch`` (the
    training batch size) the network is priced as it is built (:class:`Budget`) and refused
    in one line, before the layer that passes the limit allocates anything, if training it
    would need more memory than the course LeNet's limit allows."""
    if not isinstance(module, Module):
        raise ParamError(f"expects a layer of derivgrad.nn, got {type(module).__name__}")
    s = tuple(in_shape)
    if not s or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in s):
        raise ParamError(f"the input shape must be sizes >= 1, got {in_shape!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ParamError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    rng = np.random.default_rng(seed)
    top = module.children if isinstance(module, Sequential) else [module]
    budget = None if batch is None else Budget(batch, np.dtype(dtype).itemsize)
    token = BUDGET.set(budget)
    try:
        if budget is not None:
            budget.activations = math.prod(s)  # the input batch
        for i, c in enumerate(top):
            s = c.build(s, rng, dtype, str(i))
    finally:
        BUDGET.reset(token)
    net = Network(
        cast("list[M.Layer]", top), in_shape, config or {}, names=[str(i) for i in range(len(top))]
    )
    module.in_shape, module.shape_out = tuple(in_shape), s
    net.root = module
    net.budget = budget
    return net
