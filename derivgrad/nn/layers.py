r"""The layers of :mod:`derivgrad.nn`: descriptions that become layers when a network is
built for an input shape (:meth:`Module.build`), each running the kernels the training of
the course LeNet runs (:mod:`derivgrad.training.model`'s layers wrap :mod:`derivgrad.kernels`; one
implementation of each layer).

A module is built in place, once per network: ``model()`` returns fresh modules each call.
Parameters are initialised as PyTorch does (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``), seeded.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from derivgrad import kernels as K

from ..errors import ParamError
from ..training import model as M
from ..training.config import EVAL_BATCH, MAX_TRAIN_BYTES, training_bytes

Shape = tuple[int, ...]


class Budget:
    """Prices a network while :func:`derivgrad.nn.build` builds it, with the rule that sizes
    the course LeNet (:func:`derivgrad.training.config.training_bytes`): each layer is added
    before its parameters are allocated, so a network that would exhaust memory is refused
    in one line at the first layer that passes the limit, before that layer's arrays exist."""

    def __init__(self, batch: int, itemsize: int = 4, limit: int = MAX_TRAIN_BYTES) -> None:
        self.batch, self.itemsize, self.limit = batch, itemsize, limit
        self.params = self.activations = 0

    def add(self, layer: Module, params: int, activations: int) -> None:
        self.params += params
        self.activations += activations
        need = training_bytes(self.params, self.activations, self.batch, self.itemsize)
        if need > self.limit:
            at = (
                f"batch {self.batch}"
                if self.batch >= EVAL_BATCH
                else f"batch {self.batch} (evaluated {EVAL_BATCH:,d} at a time)"
            )
            fix = "lower --batch-size or make" if self.batch > EVAL_BATCH else "make"
            raise ParamError(
                f"layer {layer.name} ({layer.describe()}): with it the network has "
                f"{self.params:,d} parameters and {self.activations:,d} activation values per "
                f"sample, which at {at} would need about {need / 2**30:.1f} GiB, over the "
                f"{self.limit / 2**30:.0f} GiB limit; {fix} the network smaller"
            )


# the budget of the network being built (set by derivgrad.nn.build for its duration)
BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


def _fmt(s: Shape) -> str:
    return str(tuple(int(n) for n in s))


def _count(what: str, v: Any, lo: int = 1) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
        raise ParamError(f"{what} must be an integer >= {lo}, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class OpFace:
    """Where a layer's gradient is derived and proved: the op (a name of
    :mod:`derivgrad.ops`, or a :func:`derivgrad.define` op itself) whose derivation at
    ``params`` (one sample: the layer's input shape, batch 1) is this layer, ``input`` the
    op's input that is the layer's activation, ``names`` each other op input's parameter of
    the layer (``{"W": "w"}``).  The op's arrays hold the layer's entries in the same
    row-major order (an axis of length 1 may be dropped), so a reshape maps one onto the
    other.  Read by ``derivgrad derive --model``; the layer itself never derives."""

    op: Any
    params: Mapping[str, Any]
    input: str
    names: Mapping[str, str] = field(default_factory=dict)


class Module:
    """A layer or a container of layers.  A layer of one's own subclasses this and defines
    :meth:`forward`, :meth:`backward` (parameter gradients into ``self.grads``) and
    :meth:`out_shape` (which raises :class:`ParamError` for an input it cannot take)."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    name: str = "?"

    def __init__(self) -> None:
        self.params, self.grads, self.buffers = {}, {}, {}

    def describe(self) -> str:
        return type(self).__name__

    def out_shape(self, s: Shape) -> Shape:
        """One sample's output shape for one sample's input shape ``s``."""
        raise NotImplementedError

    def create(self, s: Shape, rng: np.random.Generator, dtype: Any) -> None:
        """Allocate the parameters for input shape ``s`` (after :meth:`out_shape` took it)."""

    def n_params(self, s: Shape) -> int | None:
        """How many parameters :meth:`create` will allocate for input shape ``s``, known
        before it does; ``None``: unknown (a layer of one's own), counted after."""
        return None

    def build(self, s: Shape, rng: np.random.Generator, dtype: Any, name: str = "0") -> Shape:
        """Check that the layer takes ``s``, allocate its parameters, return its output shape."""
        self.name = name
        self.in_shape = tuple(s)
        self.shape_out = self.out_shape(tuple(s))
        budget, n = BUDGET.get(), self.n_params(tuple(s))
        if budget is not None:
            budget.add(self, n or 0, math.prod(self.shape_out))
        self.create(tuple(s), rng, dtype)
        if budget is not None and n is None:
            budget.add(self, sum(int(v.size) for v in self.params.values()), 0)
        return self.shape_out

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def face(self) -> OpFace | None:
        """The op whose derivation is this layer, at its built input shape; ``None``: no op
        (``derive --model`` then checks the layer by central differences only)."""
        return None

    def leaves(self) -> Iterator[Module]:
        """The layers that compute (containers hold them)."""
        yield self

    def set_param(self, name: str, value: np.ndarray) -> None:
        """Make ``value`` the parameter ``name`` (as :attr:`params` names it): the sharded
        optimizer moves every parameter into one flat buffer and hands back views of it."""
        self.params[name] = value

    def refuse(self, s: Shape, expects: str) -> ParamError:
        return ParamError(
            f"layer {self.name} ({self.describe()}): expects {expects}, got input shape {_fmt(s)}"
        )


class _Wrapped(Module):
    """A layer of :mod:`derivgrad.training.model` (the training's own), made when built."""

    inner: Any = None

    def __init__(self) -> None:
        super().__init__()

    def make(self, s: Shape, rng: np.random.Generator, dtype: Any) -> Any:
        raise NotImplementedError

    def n_params(self, s: Shape) -> int | None:
        spec = getattr(self, "spec", None)
        return 0 if spec is None else int(spec.n_params())

    def create(self, s: Shape, rng: np.random.Generator, dtype: Any) -> None:
        self.inner = self.make(s, rng, dtype)
        self.params = self.inner.params
        self.buffers = getattr(self.inner, "buffers", {})

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return self.inner.grads if self.inner is not None else {}

    @grads.setter
    def grads(self, v: dict[str, np.ndarray]) -> None:
        pass

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        return self.inner.forward(x, train)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.inner.backward(dy)


def _image(layer: Module, s: Shape, channels: int | None = None) -> None:
    if len(s) != 3 or (channels is not None and s[0] != channels):
        c = "C" if channels is None else str(channels)
        raise layer.refuse(s, f"an input of shape ({c}, H, W)")


class Conv2d(_Wrapped):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__()
        self.spec = M.ConvSpec(
            _count("Conv2d: in_channels", in_channels),
            _count("Conv2d: out_channels", out_channels),
            _count("Conv2d: kernel_size", kernel_size),
            _count("Conv2d: stride", stride),
            _count("Conv2d: padding", padding, 0),
        )

    def describe(self) -> str:
        return self.spec.describe()

    def out_shape(self, s: Shape) -> Shape:
        _image(self, s, self.spec.c_in)
        k, p = self.spec.k, self.spec.padding
        if min(s[1], s[2]) + 2 * p < k:
            raise self.refuse(s, f"an image of at least {k - 2 * p}x{k - 2 * p}")
        return self.spec.out_shape(s)

    def make(self, s: Shape, rng: np.random.Generator, dtype: Any) -> Any:
        return self.spec.build(rng, dtype)

    def face(self) -> OpFace:
        c = self.spec
        return OpFace(
            "conv2d",
            dict(
                input=self.in_shape[1:],
                kernel=c.k,
                stride=c.stride,
                padding=c.padding,
                channels=c.c_in,
                filters=c.c_out,
            ),
            "x",
            {"w": "w", "b": "b"},
        )


class Linear(_Wrapped):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.spec = M.LinearSpec(
            _count("Linear: in_features", in_features), _count("Linear: out_features", out_features)
        )

    def describe(self) -> str:
        return self.spec.describe()

    def out_shape(self, s: Shape) -> Shape:
        if s != (self.spec.n_in,):
            raise self.refuse(s, f"an input of shape ({self.spec.n_in},)")
        return self.spec.out_shape(s)

    def make(self, s: Shape, rng: np.random.Generator, dtype: Any) -> Any:
        return self.spec.build(rng, dtype)

    def face(self) -> OpFace:
        return OpFace(
            "linear",
            dict(features=self.spec.n_in, outputs=self.spec.n_out),
            "x",
            {"W": "w", "b": "b"},
        )


class MaxPool2d(_Wrapped):
    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        k = _count("MaxPool2d: kernel_size", kernel_size)
        self.spec = M.PoolSpec(k, k if stride is None else _count("MaxPool2d: stride", stride))

    def describe(self) -> str:
        return self.spec.describe()

    def out_shape(self, s: Shape) -> Shape:
        _image(self, s)
        if min(s[1], s[2]) < self.spec.k:
            raise self.refuse(s, f"an image of at least {self.spec.k}x{self.spec.k}")
        return self.spec.out_shape(s)

    def make(self, s: Shape, rng: np.random.Generator, dtype: Any) -> Any:
        return self.spec.build(rng, dtype)

    def face(self) -> OpFace:
        return _pool_face("maxpool2d", self.in_shape, self.spec.k, self.spec.stride)


def _pool_face(op: str, s: Shape, k: int, stride: int) -> OpFace:
    return OpFace(op, dict(input=s[1:], kernel=k, stride=stride, channels=s[0]), "x")


class AvgPool2d(Module):
    """Average pooling by :func:`derivgrad.kernels.avgpool2d_forward` and its backward."""

    def __init__(self, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.k = _count("AvgPool2d: kernel_size", kernel_size)
        self.stride = self.k if stride is None else _count("AvgPool2d: stride", stride)

    def describe(self) -> str:
        return f"AvgPool2d {self.k}x{self.k}/{self.stride}"

    def n_params(self, s: Shape) -> int | None:
        return 0

    def out_shape(self, s: Shape) -> Shape:
        _image(self, s)
        if min(s[1], s[2]) < self.k:
            raise self.refuse(s, f"an image of at least {self.k}x{self.k}")
        o = lambda n: K.output_size(n, self.k, self.stride)  # noqa: E731
        return (s[0], o(s[1]), o(s[2]))

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.x_shape = x.shape
        return K.avgpool2d_forward(x, self.k, self.stride)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return K.avgpool2d_backward(dy, self.x_shape, self.k, self.stride)

    def face(self) -> OpFace:
        return _pool_face("avgpool2d", self.in_shape, self.k, self.stride)


class ReLU(_Wrapped):
    def out_shape(self, s: Shape) -> Shape:
        return s

    def make(self, s: Shape, rng: np.random.Generator, dtype: Any) -> Any:
        return M.ReLU()

    def face(self) -> OpFace:
        return OpFace("relu", dict(features=math.prod(self.in_shape)), "z")


class Flatten(_Wrapped):
    def out_shape(self, s: Shape) -> Shape:
        return (int(np.prod(s)),)

    def make(self, s: Shape, rng: np.random.Generator, dtype: Any) -> Any:
        return M.Flatten()

    def face(self) -> OpFace:
        s = self.in_shape
        c, h, w = s if len(s) == 3 else (1, 1, math.prod(s))
        return OpFace("flatten", dict(input=(h, w), channels=c), "x")


class BatchNorm2d(_Wrapped):
    """Batch norm over (N, H, W) per channel; running statistics as PyTorch keeps them."""

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.spec = M.BatchNormSpec(
            _count("BatchNorm2d: num_features", num_features), float(momentum), float(eps)
        )

    def describe(self) -> str:
        return self.spec.describe()

    def out_shape(self, s: Shape) -> Shape:
        _image(self, s, self.spec.c)
        return s

    def make(self, s: Shape, rng: np.random.Generator, dtype: Any) -> Any:
        return self.spec.build(rng, dtype)

    def face(self) -> OpFace:
        return OpFace(
            "batchnorm2d",
            dict(batch=1, channels=self.spec.c, input=self.in_shape[1:], eps=self.spec.eps),
            "x",
            {"gamma": "gamma", "beta": "beta"},
        )


class Sigmoid(Module):
    """The logistic function by the sigmoid op's kernels (:mod:`derivgrad.ops.sigmoid`)."""

    def n_params(self, s: Shape) -> int | None:
        return 0

    def out_shape(self, s: Shape) -> Shape:
        return s

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        from ..ops.sigmoid import sigmoid_forward

        self.y = sigmoid_forward(x)
        return self.y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        from ..ops.sigmoid import sigmoid_backward

        return sigmoid_backward(dy, self.y)

    def face(self) -> OpFace:
        return OpFace("sigmoid", dict(features=math.prod(self.in_shape)), "z")


class Pad2d(Module):
    """Zero padding of the last two axes by ``padding`` on every side: a copy into a larger
    zeroed array (its backward the slice back), no arithmetic."""

    def __init__(self, padding: int) -> None:
        super().__init__()
        self.p = _count("Pad2d: padding", padding, 0)

    def describe(self) -> str:
        return f"Pad2d {self.p}"

    def n_params(self, s: Shape) -> int | None:
        return 0

    def out_shape(self, s: Shape) -> Shape:
        _image(self, s)
        return (s[0], s[1] + 2 * self.p, s[2] + 2 * self.p)

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        p = self.p
        y = np.zeros((*x.shape[:-2], x.shape[-2] + 2 * p, x.shape[-1] + 2 * p), x.dtype)
        y[..., p : p + x.shape[-2], p : p + x.shape[-1]] = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        p = self.p
        return np.ascontiguousarray(dy[..., p : dy.shape[-2] - p, p : dy.shape[-1] - p])


class _Container(Module):
    children: list[Module]

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, c in enumerate(self.children) for k, v in c.params.items()}

    @params.setter
    def params(self, v: dict[str, np.ndarray]) -> None:
        pass

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, c in enumerate(self.children) for k, v in c.grads.items()}

    @grads.setter
    def grads(self, v: dict[str, np.ndarray]) -> None:
        pass

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        return {f"{i}.{k}": v for i, c in enumerate(self.children) for k, v in c.buffers.items()}

    @buffers.setter
    def buffers(self, v: dict[str, np.ndarray]) -> None:
        pass

    def leaves(self) -> Iterator[Module]:
        for c in self.children:
            yield from c.leaves()

    def set_param(self, name: str, value: np.ndarray) -> None:
        i, rest = name.split(".", 1)
        self.children[int(i)].set_param(rest, value)


def _module(owner: str, m: Any) -> Module:
    if not isinstance(m, Module):
        raise ParamError(f"{owner}: expects layers of derivgrad.nn, got {type(m).__name__}")
    return m


class Sequential(_Container):
    """Layers applied in order."""

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        if not layers:
            raise ParamError("Sequential: expects at least one layer")
        self.children = [_module("Sequential", m) for m in layers]

    def out_shape(self, s: Shape) -> Shape:
        raise AssertionError("a container's shape is found by building it")

    def build(self, s: Shape, rng: np.random.Generator, dtype: Any, name: str = "") -> Shape:
        self.name, self.in_shape = name or "network", tuple(s)
        for i, c in enumerate(self.children):
            s = c.build(s, rng, dtype, f"{name}.{i}" if name else str(i))
        self.shape_out = s
        return s

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        for c in self.children:
            x = c.forward(x, train)
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        for c in reversed(self.children):
            dy = c.backward(dy)
        return dy


class Residual(_Container):
    """``y = block(x) + x``: the block must keep the shape."""

    def __init__(self, block: Module) -> None:
        super().__init__()
        self.children = [_module("Residual", block)]

    def describe(self) -> str:
        return "Residual"

    def out_shape(self, s: Shape) -> Shape:
        raise AssertionError("a container's shape is found by building it")

    def build(self, s: Shape, rng: np.random.Generator, dtype: Any, name: str = "0") -> Shape:
        self.name, self.in_shape = name, tuple(s)
        out = self.children[0].build(s, rng, dtype, f"{name}.0")
        if out != tuple(s):
            raise ParamError(
                f"layer {name} (Residual): its block maps input shape {_fmt(s)} to {_fmt(out)}; "
                f"y = block(x) + x needs the same shape"
            )
        budget = BUDGET.get()
        if budget is not None:  # the sum block(x) + x is one more activation
            budget.add(self, 0, math.prod(out))
        self.shape_out = out
        return out

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        return self.children[0].forward(x, train) + x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.children[0].backward(dy) + dy
