r"""``Defined``: any :func:`derivgrad.define` op as a layer, run by its generated kernels.

The input named ``input`` is the activation (its first axis the batch); every other input is
a trainable parameter of the shape given.  The default initialisation is
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in`` the product of the extents summed over
(the indices of the first statement reading the parameter that its left side does not
name): a convolution's ``C*KH*KW``, a depthwise one's ``KH*KW``, as PyTorch counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ParamError
from .layers import Module, OpFace, Shape, _fmt

Init = str | Callable[[np.random.Generator, tuple[int, ...], int], np.ndarray]
INITS = ("uniform", "zeros", "ones")


class Defined(Module):
    def __init__(self, op: Any, input: str = "x", init: Init = "uniform", **param_shapes: Any):
        super().__init__()
        from ..notation.op import DefinedOp

        if not isinstance(op, DefinedOp):
            raise ParamError(f"Defined: expects an op of derivgrad.define, got {type(op).__name__}")
        self.op = op
        if len(op.outputs) > 1:
            raise ParamError(
                f"Defined: {op.name} has several outputs ({', '.join(op.outputs)}); a layer "
                "has one: read the others in a later statement, or define them apart"
            )
        if input not in op.inputs:
            raise ParamError(
                f"Defined: {op.name} has no input {input!r}; its inputs are {', '.join(op.inputs)}"
            )
        self.input = input
        wanted = [k for k in op.inputs if k != input]
        missing = [k for k in wanted if k not in param_shapes]
        extra = [k for k in param_shapes if k not in wanted]
        if missing or extra:
            what = f"no shape for {', '.join(missing)}" if missing else f"no input {extra[0]!r}"
            raise ParamError(
                f"Defined: {op.name}: {what}; give a shape for each of its parameters "
                f"({', '.join(wanted) or 'none'})"
            )
        self.shapes: dict[str, tuple[int, ...]] = {}
        for k in wanted:
            v = param_shapes[k]
            v = (v,) if isinstance(v, int) else v
            if not (
                isinstance(v, (tuple, list))
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in v)
            ):
                raise ParamError(f"Defined: the shape of {k} must be integers >= 1, got {v!r}")
            if len(v) != op.program.ranks[k]:
                raise ParamError(
                    f"Defined: {k} has {op.program.ranks[k]} axes in {op.name}, "
                    f"got shape {tuple(v)}"
                )
            self.shapes[k] = tuple(v)
        if not (callable(init) or init in INITS):
            raise ParamError(
                f"Defined: init must be one of {', '.join(INITS)} or a function "
                f"(rng, shape, fan_in) -> array, got {init!r}"
            )
        self.init = init

    def describe(self) -> str:
        return f"Defined {self.op.name}: {self.op.spec.strip().splitlines()[-1].strip()}"

    def _ranges(self, s: Shape, batch: int) -> Any:
        return self.op.program.infer({self.input: (batch, *s), **self.shapes}, fixed=self.op.fixed)

    def out_shape(self, s: Shape) -> Shape:
        from ..notation.parse import DefineError

        rank = self.op.program.ranks[self.input] - 1
        if len(s) != rank:
            raise self.refuse(s, f"a sample of {rank} axes ({self.input} with the batch first)")
        out = []
        for batch in (1, 2):  # the output's first axis must follow the batch
            try:
                out.append(self._ranges(s, batch).shapes[self.op.output])
            except DefineError as e:
                raise ParamError(
                    f"layer {self.name} ({self.describe()}): input shape {_fmt(s)} with "
                    f"{', '.join(f'{k}={_fmt(v)}' for k, v in self.shapes.items())} does not fit "
                    f"the definition: {e}"
                ) from None
        if out[0][0] != 1 or out[1][0] != 2 or out[0][1:] != out[1][1:]:
            raise ParamError(
                f"layer {self.name} ({self.describe()}): the output {self.op.output} must have "
                f"the batch as its first axis (a batch of 1 gives {_fmt(out[0])})"
            )
        return tuple(out[0][1:])

    def n_params(self, s: Shape) -> int | None:
        return sum(math.prod(v) for v in self.shapes.values())

    def fan_in(self, name: str, s: Shape) -> int:
        """The product of the extents summed over where ``name`` is first read."""
        ranges = self._ranges(s, 1)
        for st, index in zip(self.op.program.statements, ranges.index):
            if any(r[0] == name for r in st.refs):
                summed = [i for i in st.indices if i not in st.lhs]
                return max(1, math.prod(int(index[i][1] - index[i][0]) for i in summed))
        return 1

    def create(self, s: Shape, rng: np.random.Generator, dtype: Any) -> None:
        self.params = {}
        for k, shape in self.shapes.items():
            fan = self.fan_in(k, s)
            if callable(self.init):
                a = np.asarray(self.init(rng, shape, fan), dtype=dtype)
                if a.shape != shape:
                    raise ParamError(
                        f"layer {self.name}: init returned shape {a.shape} for {k}, not {shape}"
                    )
            elif self.init == "uniform":
                b = 1.0 / math.sqrt(fan)
                a = rng.uniform(-b, b, shape).astype(dtype)
            else:
                a = (np.zeros if self.init == "zeros" else np.ones)(shape, dtype)
            self.params[k] = np.ascontiguousarray(a)
        self.grads = {}

    def face(self) -> OpFace:
        """The defined op itself, at one sample (batch 1) of this layer's input."""
        return OpFace(
            self.op,
            {self.input: (1, *self.in_shape), **self.shapes},
            self.input,
            {k: k for k in self.shapes},
        )

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        self.x = x
        return self.op.forward(**{self.input: x, **self.params})

    def backward(self, dy: np.ndarray) -> np.ndarray:
        g = self.op.backward(np.ascontiguousarray(dy), **{self.input: self.x, **self.params})
        self.grads = {k: g[k] for k in self.params}
        return g[self.input]
