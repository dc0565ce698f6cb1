r"""Layers, a sequential container, optimizers and the course LeNet, on top of ``kernels``.

Each layer keeps what its backward needs from the last training forward and writes its
parameter gradients into ``grads`` (same names as ``params``).  Initialisation follows
PyTorch's defaults (``kaiming_uniform_(a=√5)``, i.e. ``U(−1/√fan_in, 1/√fan_in)`` for
weights and biases), seeded, in float32 unless asked otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from derivgrad import kernels as K

from ..errors import ParamError


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

    @property
    def spec(self) -> ConvSpec:
        co, ci, k, _ = self.params["w"].shape
        return ConvSpec(ci, co, k, self.stride, self.padding, self.need_dx)

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return self.spec.out_shape(s)

    def describe(self) -> str:
        return self.spec.describe()


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

    @property
    def spec(self) -> PoolSpec:
        return PoolSpec(self.k, self.stride)

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return self.spec.out_shape(s)

    def describe(self) -> str:
        return self.spec.describe()


class Flatten(Layer):
    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy.reshape(self.shape)

    spec = property(lambda self: FlattenSpec())

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return self.spec.out_shape(s)


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

    @property
    def spec(self) -> LinearSpec:
        o, i = self.params["w"].shape
        return LinearSpec(i, o, self.need_dx)

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return self.spec.out_shape(s)

    def describe(self) -> str:
        return self.spec.describe()


class ReLU(Layer):
    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.x = x
        return K.relu_forward(x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return K.relu_backward(dy, self.x)

    spec = property(lambda self: ReluSpec())

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

    @property
    def spec(self) -> BatchNormSpec:
        return BatchNormSpec(self.params["gamma"].shape[0], self.momentum, self.eps)

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return s

    def describe(self) -> str:
        return self.spec.describe()


class Sequential:
    """Layers in order; ``loss_and_grads`` runs forward, softmax cross-entropy, backward."""

    def __init__(
        self,
        layers: Iterable[Layer],
        in_shape: Iterable[int],
        config: Mapping[str, Any] | None = None,
        names: Iterable[str] | None = None,
    ) -> None:
        self.layers = list(layers)
        self.in_shape = tuple(in_shape)
        self.config = dict(config or {})
        self.names = list(names) if names is not None else [str(i) for i in range(len(self.layers))]
        if len(self.names) != len(self.layers):
            raise ValueError(f"{len(self.layers)} layers, {len(self.names)} names")

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (by :func:`lenet_spec`): found by name, not position."""
        if name not in self.names:
            raise KeyError(f"no layer {name!r}; the layers are {', '.join(self.names)}")
        return self.layers[self.names.index(name)]

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

    def loss_and_update(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        opt: SGD | Adam,
        check_loss: Callable[[float], None] | None = None,
    ) -> tuple[float, np.ndarray]:
        """:meth:`loss_and_grads` followed by ``opt.step(self.named_grads())``, the update
        folded into the backward: each layer's parameters are updated as soon as that
        layer's backward has returned (its gradients are then complete and no later
        backward reads its parameters), while the gradients are still in cache.  The
        optimizer does per element what its ``step`` does, so the parameters, optimizer
        state and gradients afterwards are bit for bit those of the separate pass.
        ``check_loss(loss)`` runs before any parameter changes (it may raise to refuse the
        step).  Only for an optimizer that owns ``self.named_params()`` whole: where the
        gradients must first be combined (all-reduced over MPI ranks) or the update is
        split across ranks, the caller runs the separate pass."""
        owner = self._param_owner()
        if set(opt.params) != set(owner) or any(
            opt.params[k] is not p for k, p in self.named_params().items()
        ):
            raise ValueError("loss_and_update: the optimizer does not own this network's params")
        logits = self.forward(x, train=True)
        loss, probs = K.softmax_cross_entropy_forward(logits, labels)
        if check_loss is not None:
            check_loss(loss)
        g = K.softmax_cross_entropy_backward(probs, labels)
        opt.begin_step()
        done = 0
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            g = layer.backward(g)
            for k, gk in layer.grads.items():
                opt.update(f"{i}.{k}", gk)
                done += 1
        if done != len(owner):
            raise ValueError(f"loss_and_update: {done} gradients for {len(owner)} parameters")
        opt.end_step()
        return loss, probs

    def _param_owner(self) -> dict[str, int]:
        """Each parameter's layer; raises where one array is a parameter of two layers (its
        gradient would be complete only after both backwards, so no early update)."""
        owner: dict[str, int] = {}
        seen: dict[int, int] = {}
        for i, layer in enumerate(self.layers):
            for k, p in layer.params.items():
                if seen.setdefault(id(p), i) != i:
                    raise ValueError(f"loss_and_update: parameter {i}.{k} is shared by layers")
                owner[f"{i}.{k}"] = i
        return owner

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


# -- layers by their sizes alone: what a network is, before (and without) any weight -------
class ConvSpec(NamedTuple):
    c_in: int
    c_out: int
    k: int
    stride: int = 1
    padding: int = 0
    need_dx: bool = True

    def describe(self) -> str:
        k = self.k
        return f"Conv2d {self.c_in}->{self.c_out} {k}x{k} stride {self.stride} pad {self.padding}"

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        o = lambda n: K.output_size(n, self.k, self.stride, self.padding)  # noqa: E731
        return (self.c_out, o(s[1]), o(s[2]))

    def n_params(self) -> int:
        return self.c_out * (self.c_in * self.k * self.k + 1)

    def build(self, rng: np.random.Generator, dtype: Any) -> Layer:
        c_in, c_out, k, stride, padding, need_dx = self
        return Conv2d(c_in, c_out, k, rng, dtype, stride, padding, need_dx)


class BatchNormSpec(NamedTuple):
    c: int
    momentum: float = 0.1
    eps: float = 1e-5

    def describe(self) -> str:
        return f"BatchNorm2d {self.c}"

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return s

    def n_params(self) -> int:
        return 2 * self.c

    def build(self, rng: np.random.Generator, dtype: Any) -> Layer:
        return BatchNorm2d(self.c, dtype, self.momentum, self.eps)


class PoolSpec(NamedTuple):
    k: int
    stride: int

    def describe(self) -> str:
        return f"MaxPool2d {self.k}x{self.k}/{self.stride}"

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        o = lambda n: K.output_size(n, self.k, self.stride)  # noqa: E731
        return (s[0], o(s[1]), o(s[2]))

    def n_params(self) -> int:
        return 0

    def build(self, rng: np.random.Generator, dtype: Any) -> Layer:
        return MaxPool2d(self.k, self.stride)


class FlattenSpec(NamedTuple):
    def describe(self) -> str:
        return "Flatten"

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(s)),)

    def n_params(self) -> int:
        return 0

    def build(self, rng: np.random.Generator, dtype: Any) -> Layer:
        return Flatten()


class LinearSpec(NamedTuple):
    n_in: int
    n_out: int
    need_dx: bool = True

    def describe(self) -> str:
        return f"Linear {self.n_in}->{self.n_out}"

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return (self.n_out,)

    def n_params(self) -> int:
        return self.n_out * (self.n_in + 1)

    def build(self, rng: np.random.Generator, dtype: Any) -> Layer:
        return Linear(self.n_in, self.n_out, rng, dtype, self.need_dx)


class ReluSpec(NamedTuple):
    def describe(self) -> str:
        return "ReLU"

    def out_shape(self, s: tuple[int, ...]) -> tuple[int, ...]:
        return s

    def n_params(self) -> int:
        return 0

    def build(self, rng: np.random.Generator, dtype: Any) -> Layer:
        return ReLU()


Spec = ConvSpec | BatchNormSpec | PoolSpec | FlattenSpec | LinearSpec | ReluSpec


def lenet_spec(
    filters: int = 20,
    kernel: int = 5,
    hidden: int = 500,
    classes: int = 10,
    in_shape: tuple[int, int, int] = (1, 28, 28),
    batchnorm: bool = False,
) -> list[tuple[str, Spec]]:
    """The course LeNet as ``(name, layer spec)`` in order: conv F@K×K (+bias) →
    [batchnorm] → max-pool 2×2/2 → flatten → fc hidden → ReLU → fc classes.  The one
    description that :func:`lenet` builds and :func:`lenet_rows` tabulates; a layer is found
    by its name (``"fc1"``), wherever batch norm puts it.

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
    pool = PoolSpec(2, 2)
    flat = FlattenSpec().out_shape(pool.out_shape((filters, hc, wc)))[0]
    # the first layer computes no input gradient: nothing upstream of the image
    layers: list[tuple[str, Spec]] = [("conv", ConvSpec(C, filters, kernel, need_dx=False))]
    if batchnorm:
        layers.append(("bn", BatchNormSpec(filters)))
    return layers + [
        ("pool", pool),
        ("flatten", FlattenSpec()),
        ("fc1", LinearSpec(flat, hidden)),
        ("relu", ReluSpec()),
        ("fc2", LinearSpec(hidden, classes)),
    ]


def lenet_rows(
    filters: int = 20,
    kernel: int = 5,
    hidden: int = 500,
    classes: int = 10,
    in_shape: tuple[int, int, int] = (1, 28, 28),
    batchnorm: bool = False,
) -> list[LayerRow]:
    """The course LeNet's summary computed from :func:`lenet_spec` alone, allocating
    nothing, so a request for a huge network can be priced (and refused) before any weight
    exists."""
    rows, s = [], tuple(in_shape)
    for _, spec in lenet_spec(filters, kernel, hidden, classes, in_shape, batchnorm):
        s = spec.out_shape(s)
        rows.append(LayerRow(spec.describe(), s, spec.n_params()))
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
    """The network :func:`lenet_spec` describes, initialised from ``seed``.  With the
    defaults, 520 + 1,440,500 + 5,010 = 1,446,030 parameters (worked problem 12)."""
    spec = lenet_spec(filters, kernel, hidden, classes, in_shape, batchnorm)
    rng = np.random.default_rng(seed)
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
    layers = [s.build(rng, dtype) for _, s in spec]
    return Sequential(layers, in_shape, cfg, names=[name for name, _ in spec])


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
        self.begin_step()
        for k in self.params:
            self.update(k, grads[k])
        self.end_step()

    # A step in parts, so that the training loop can update each layer's parameters as
    # soon as its backward is done (Sequential.loss_and_update): begin_step, update for
    # every parameter once, in any order, then end_step -- the same arithmetic as step.
    def begin_step(self) -> None:
        pass

    def update(self, k: str, g: np.ndarray) -> None:
        # PyTorch initialises the momentum buffer with the first gradient
        p = self.params[k]
        K.sgd_update(
            p,
            g,
            self.state[k] if self.momentum else p,
            self.lr,
            self.momentum,
            self.wd,
            self.steps == 0,
        )

    def end_step(self) -> None:
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
        self.begin_step()
        for k in self.params:
            self.update(k, grads[k])
        self.end_step()

    # in parts as SGD's (begin_step, update per parameter, end_step)
    def begin_step(self) -> None:
        self.steps += 1

    def update(self, k: str, g: np.ndarray) -> None:
        K.adam_update(
            self.params[k],
            g,
            self.m[k],
            self.v[k],
            self.lr,
            (self.b1, self.b2),
            self.eps,
            self.wd,
            self.steps,
        )

    def end_step(self) -> None:
        pass

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
