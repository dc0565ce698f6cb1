r"""Layers, a sequential container, optimizers and the course LeNet, on top of ``kernels``.

Each layer keeps what its backward needs from the last training forward and writes its
parameter gradients into ``grads`` (same names as ``params``).  Initialisation follows
PyTorch's defaults (``kaiming_uniform_(a=√5)``, i.e. ``U(−1/√fan_in, 1/√fan_in)`` for
weights and biases), seeded, in float32 unless asked otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from derivgrad import kernels as K

from .errors import ParamError


class Layer:
    params: dict
    grads: dict

    def __init__(self):
        self.params, self.grads = {}, {}

    need_dx: bool = True  # whether backward computes the input gradient (not for the first layer)

    def describe(self) -> str:
        return type(self).__name__

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        """The layer's output; with ``train`` it keeps what its backward needs."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """The input gradient from ``dy``; parameter gradients go into ``self.grads``."""
        raise NotImplementedError

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        """Output shape of one sample of shape ``s``."""
        raise NotImplementedError


class Conv2d(Layer):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        k: int,
        rng: np.random.Generator,
        dtype: Any,
        stride: int = 1,
        padding: int = 0,
        need_dx: bool = True,
    ) -> None:
        super().__init__()
        bound = 1.0 / np.sqrt(c_in * k * k)
        self.params = {
            "w": rng.uniform(-bound, bound, (c_out, c_in, k, k)).astype(dtype),
            "b": rng.uniform(-bound, bound, c_out).astype(dtype),
        }
        self.stride, self.padding, self.need_dx = stride, padding, need_dx

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.x = x
        return K.conv2d_forward(x, self.params["w"], self.params["b"], self.stride, self.padding)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx, self.grads["w"], self.grads["b"] = K.conv2d_backward(
            dy, self.x, self.params["w"], self.stride, self.padding, need_dx=self.need_dx
        )
        return dx

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        C, H, W = s
        o = lambda n: K.output_size(n, self.params["w"].shape[2], self.stride, self.padding)
        return (self.params["w"].shape[0], o(H), o(W))

    def describe(self) -> str:
        co, ci, k, _ = self.params["w"].shape
        return f"Conv2d {ci}->{co} {k}x{k} stride {self.stride} pad {self.padding}"


class MaxPool2d(Layer):
    def __init__(self, k: int, stride: int | None = None) -> None:
        super().__init__()
        self.k, self.stride = k, stride or k

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        y, self.idx = K.maxpool2d_forward(x, self.k, self.stride)
        self.shape = x.shape
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return K.maxpool2d_backward(dy, self.idx, self.shape)

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        C, H, W = s
        return (C, K.output_size(H, self.k, self.stride), K.output_size(W, self.k, self.stride))

    def describe(self) -> str:
        return f"MaxPool2d {self.k}x{self.k}/{self.stride}"


class Flatten(Layer):
    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy.reshape(self.shape)

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(s)),)


class Linear(Layer):
    def __init__(
        self, n_in: int, n_out: int, rng: np.random.Generator, dtype: Any, need_dx: bool = True
    ) -> None:
        super().__init__()
        bound = 1.0 / np.sqrt(n_in)
        self.params = {
            "w": rng.uniform(-bound, bound, (n_out, n_in)).astype(dtype),
            "b": rng.uniform(-bound, bound, n_out).astype(dtype),
        }
        self.need_dx = need_dx

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.x = x
        return K.linear_forward(x, self.params["w"], self.params["b"])

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx, self.grads["w"], self.grads["b"] = K.linear_backward(
            dy, self.x, self.params["w"], need_dx=self.need_dx
        )
        return dx

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return (self.params["w"].shape[0],)

    def describe(self) -> str:
        o, i = self.params["w"].shape
        return f"Linear {i}->{o}"


class ReLU(Layer):
    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.x = x
        return K.relu_forward(x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return K.relu_backward(dy, self.x)

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return s


class BatchNorm2d(Layer):
    def __init__(self, c: int, dtype: Any, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.params = {"gamma": np.ones(c, dtype), "beta": np.zeros(c, dtype)}
        self.buffers = {"running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype)}
        self.momentum, self.eps = momentum, eps

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        y, self.cache = K.batchnorm2d_forward(
            x,
            self.params["gamma"],
            self.params["beta"],
            self.eps,
            train,
            self.buffers["running_mean"],
            self.buffers["running_var"],
            self.momentum,
        )
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx, self.grads["gamma"], self.grads["beta"] = K.batchnorm2d_backward(dy, self.cache)
        return dx

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return s

    def describe(self) -> str:
        return f"BatchNorm2d {self.params['gamma'].shape[0]}"


class Sequential:
    """Layers in order; ``loss_and_grads`` runs forward, softmax cross-entropy, backward."""

    def __init__(
        self,
        layers: Iterable[Layer],
        in_shape: Iterable[int],
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.layers = list(layers)
        self.in_shape = tuple(in_shape)
        self.config = dict(config or {})

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        logits = self.forward(x, train=True)
        loss, probs = K.softmax_cross_entropy_forward(logits, labels)
        g = K.softmax_cross_entropy_backward(probs, labels)
        for layer in reversed(self.layers):
            g = layer.backward(g)
        return loss, probs

    def named_params(self) -> dict[str, np.ndarray]:
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()
        }

    def named_grads(self) -> dict[str, np.ndarray]:
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()
        }

    def named_buffers(self) -> dict[str, np.ndarray]:
        return {
            f"{i}.{k}": v
            for i, layer in enumerate(self.layers)
            for k, v in getattr(layer, "buffers", {}).items()
        }

    def summary(self) -> list[LayerRow]:
        """``[(description, output shape, parameter count)]`` per layer."""
        rows, s = [], self.in_shape
        for layer in self.layers:
            s = layer.out_shape(s)
            n = sum(int(v.size) for v in layer.params.values())
            rows.append(LayerRow(layer.describe(), tuple(s), n))
        return rows

    def n_params(self) -> int:
        return sum(int(v.size) for v in self.named_params().values())


class LayerRow(NamedTuple):
    """One row of a network summary: what the layer is, its output shape, its parameters."""

    description: str
    shape: tuple[int, ...]
    params: int


def lenet_rows(
    filters: int = 20,
    kernel: int = 5,
    hidden: int = 500,
    classes: int = 10,
    in_shape: tuple[int, int, int] = (1, 28, 28),
    batchnorm: bool = False,
) -> list[LayerRow]:
    """The course LeNet's summary computed from the sizes alone, allocating nothing, so a
    request for a huge network can be priced (and refused) before any weight exists.

    Raises :class:`~derivgrad.errors.ParamError` when the sizes describe no network (a
    kernel larger than the image, an image too small to pool)."""
    C, H, W = in_shape
    for name, v in (("filters", filters), ("kernel", kernel), ("hidden", hidden)):
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) or v < 1:
            raise ParamError(f"lenet: {name} must be an integer >= 1, got {v!r}")
    if kernel > min(H, W):
        raise ParamError(f"lenet: kernel {kernel} is larger than the {H}x{W} input")
    hc, wc = H - kernel + 1, W - kernel + 1
    if min(hc, wc) < 2:
        raise ParamError(
            f"lenet: kernel {kernel} leaves a {hc}x{wc} feature map, too small for the 2x2 "
            f"max-pool; use kernel <= {min(H, W) - 1}"
        )
    hp, wp = hc // 2, wc // 2
    flat = filters * hp * wp
    rows = [
        LayerRow(
            f"Conv2d {C}->{filters} {kernel}x{kernel} stride 1 pad 0",
            (filters, hc, wc),
            filters * (C * kernel * kernel + 1),
        )
    ]
    if batchnorm:
        rows.append(LayerRow(f"BatchNorm2d {filters}", (filters, hc, wc), 2 * filters))
    rows += [
        LayerRow("MaxPool2d 2x2/2", (filters, hp, wp), 0),
        LayerRow("Flatten", (flat,), 0),
        LayerRow(f"Linear {flat}->{hidden}", (hidden,), hidden * (flat + 1)),
        LayerRow("ReLU", (hidden,), 0),
        LayerRow(f"Linear {hidden}->{classes}", (classes,), classes * (hidden + 1)),
    ]
    return rows


def lenet(
    filters: int = 20,
    kernel: int = 5,
    hidden: int = 500,
    classes: int = 10,
    in_shape: tuple[int, int, int] = (1, 28, 28),
    batchnorm: bool = False,
    seed: int = 0,
    dtype: type = np.float32,
) -> Sequential:
    """The course network: conv F@K×K (+bias) → [batchnorm] → max-pool 2×2/2 → flatten →
    fc hidden → ReLU → fc classes.  With the defaults, 520 + 1,440,500 + 5,010 = 1,446,030
    parameters (worked problem 12).  The first layer computes no input gradient."""
    lenet_rows(filters, kernel, hidden, classes, in_shape, batchnorm)  # refuse bad sizes first
    rng = np.random.default_rng(seed)
    C, H, W = in_shape
    conv = Conv2d(C, filters, kernel, rng, dtype, need_dx=False)
    layers: list[Layer] = [conv]
    if batchnorm:
        layers.append(BatchNorm2d(filters, dtype))
    layers += [MaxPool2d(2)]
    conv_out = conv.out_shape(in_shape)
    flat = filters * K.output_size(conv_out[1], 2, 2) * K.output_size(conv_out[2], 2, 2)
    layers += [
        Flatten(),
        Linear(flat, hidden, rng, dtype),
        ReLU(),
        Linear(hidden, classes, rng, dtype),
    ]
    cfg = dict(
        arch="lenet",
        filters=filters,
        kernel=kernel,
        hidden=hidden,
        classes=classes,
        in_shape=list(in_shape),
        batchnorm=batchnorm,
        dtype=np.dtype(dtype).name,
    )
    return Sequential(layers, in_shape, cfg)


def lenet_loss_and_grads(
    d: Any, v: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run the kernels' LeNet on a symbolic LeNet derivation's instance: values ``v`` named
    like ``d.inputs``; returns (loss as a 1-element array, gradients in the derivation's
    shapes).  The kernel face of the registry's ``lenet`` entry."""
    P = d.params
    H, W = P["input"]
    net = lenet(P["filters"], P["kernel"], P["hidden"], P["classes"], (1, H, W), dtype=np.float64)
    conv, fc1, fc2 = net.layers[0], net.layers[3], net.layers[5]
    conv.params = {"w": v["w"][:, None].astype(np.float64), "b": v["b"].astype(np.float64)}
    fc1.params = {"w": v["W1"].astype(np.float64), "b": v["b1"].astype(np.float64)}
    fc2.params = {"w": v["W2"].astype(np.float64), "b": v["b2"].astype(np.float64)}
    conv.need_dx = True
    loss, _ = net.loss_and_grads(v["x"][None, None].astype(np.float64), np.array([P["label"] - 1]))
    g = {
        "w": conv.grads["w"][:, 0],
        "b": conv.grads["b"],
        "W1": fc1.grads["w"],
        "b1": fc1.grads["b"],
        "W2": fc2.grads["w"],
        "b2": fc2.grads["b"],
    }
    return np.array([loss]), g


class SGD:
    """PyTorch's SGD: ``v ← μ v + (g + λ p)``, ``p ← p − lr v`` (dampening 0)."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float = 0.01,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.params, self.lr, self.momentum, self.wd = params, lr, momentum, weight_decay
        self.state = {k: np.zeros_like(p) for k, p in params.items()} if momentum else {}
        self.steps = 0

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        for k, p in self.params.items():
            # PyTorch initialises the momentum buffer with the first gradient
            K.sgd_update(
                p,
                grads[k],
                self.state[k] if self.momentum else p,
                self.lr,
                self.momentum,
                self.wd,
                self.steps == 0,
            )
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, **{f"v.{k}": v for k, v in self.state.items()}}

    def load_state_dict(self, s: Mapping[str, Any]) -> None:
        self.steps = int(s["steps"])
        for k in self.state:
            self.state[k][...] = s[f"v.{k}"]


class Adam:
    """Adam (Kingma & Ba) with PyTorch's defaults and bias correction; L2 weight decay."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params, self.lr, self.b1, self.b2, self.eps, self.wd = (
            params,
            lr,
            betas[0],
            betas[1],
            eps,
            weight_decay,
        )
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}
        self.steps = 0

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        self.steps += 1
        for k, p in self.params.items():
            K.adam_update(
                p,
                grads[k],
                self.m[k],
                self.v[k],
                self.lr,
                (self.b1, self.b2),
                self.eps,
                self.wd,
                self.steps,
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            **{f"m.{k}": v for k, v in self.m.items()},
            **{f"v.{k}": v for k, v in self.v.items()},
        }

    def load_state_dict(self, s: Mapping[str, Any]) -> None:
        self.steps = int(s["steps"])
        for k in self.m:
            self.m[k][...] = s[f"m.{k}"]
            self.v[k][...] = s[f"v.{k}"]
