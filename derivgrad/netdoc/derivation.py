"""The network's derivation on one sample: every layer's op derived and proved at the layer's
shapes, one sample's numbers carried forward and back through those derivations alone, and
each array held to the network's own pass (:func:`derivgrad.nn.trace.trace`, the kernels).

The numbers: the input and every parameter are small integers drawn from the seed (they
replace the network's initialisation, so that every forward step prints exactly); the loss's
gradient ``p - e_y`` is irrational, so from there on the numbers are floats (53 bits, as
the kernels').
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from ..documents.instance import attach, evaluate, substitutions
from ..errors import ParamError
from ..nn.check import check_layer
from ..nn.layers import Module, OpFace, Residual, Sequential
from ..nn.network import Network, build
from ..nn.trace import Trace, trace
from ..ops.base import SYMBOLIC_SECONDS_LIMIT, Op
from ..registry import get
from ..symbolic.derivation import Derivation
from ..symbolic.reader import as_expr

INPUT_RANGE = (-2, 2)  # the sample's entries
PARAM_RANGE = (-1, 1)  # every parameter's entries, times a power of 2 that keeps them moderate
# derived (SymPy, exact or 53-bit floats) against the kernels (float64): round-off only
RTOL = 1e-9


@dataclass
class Step:
    """One computing node of the network: a layer (with its op's derivation) or a residual
    sum.  ``inputs``: the names of the activations it reads (a layer one, a sum two: the
    block's output and the skip); ``output``: the activation it writes."""

    index: int  # 1-based, in forward order: its output is a^(index)
    module: Module
    inputs: tuple[int, ...]  # activation numbers read (0: the network's input x)
    face: OpFace | None = None
    op: Op | None = None
    d: Derivation | None = None  # the op's derivation at this layer's shapes, numbers attached
    sym: Derivation | None = None  # the same, symbolic (no numbers): what the composition reads
    x: np.ndarray | None = None  # derived numbers: input (op's shape), output, δ's, gradients
    y: np.ndarray | None = None
    delta: np.ndarray | None = None  # ∂L/∂y
    grads: dict[str, np.ndarray] = field(default_factory=dict)  # by op input name
    errors: dict[str, float] = field(default_factory=dict)  # max |derived − kernels| / scale
    numeric_only: str = ""  # why a layer has no derivation (its central-difference check)

    @property
    def residual(self) -> bool:
        return isinstance(self.module, Residual)


@dataclass
class NetworkDerivation:
    spec: str  # what the user named (net.py:model)
    in_shape: tuple[int, ...]
    label: int  # 1-based
    seed: int
    net: Network
    steps: list[Step]
    loss: Derivation  # the loss op's derivation, numbers attached
    loss_value: float
    x: np.ndarray  # the sample (in_shape)
    probs: np.ndarray
    trace: Trace
    verified: bool
    loss_sym: Derivation | None = None  # the loss op's derivation, symbolic
    loss_face_input: str = "z"
    # the whole network as one expression (netdoc.composed), proved, or why it was not tried
    composed: Derivation | None = None
    composed_why: str = ""
    composed_error: float = 0.0  # its gradients at the sample against the layer-by-layer numbers
    # how the document names activation t: letter^(tag), tag the layer's number unless the
    # network names its layers (the course LeNet: z^(conv), ..., as its homework writes them)
    letter: str = "a"
    seed_note: str = ""  # why this seed (lively_seed), printed after it
    tags: dict[int, str] = field(default_factory=dict)

    def tag(self, t: int) -> str:
        return self.tags.get(t, str(t))

    @property
    def failures(self) -> list[str]:
        """One line per array whose derived numbers are not the kernels'."""
        out = []
        for s in self.steps:
            for k, e in s.errors.items():
                if not e <= 1.0:
                    out.append(f"{describe(s)}: {k} differs from the kernels' (error {e:.3g})")
        if not self.composed_error <= 1.0:
            out.append(
                "the whole network's derivative (one expression) differs from the layer-by-layer "
                f"numbers (error {self.composed_error:.3g})"
            )
        return out


def describe(s: Step) -> str:
    return f"layer {s.module.name} ({s.module.describe()})"


def _op(face: OpFace) -> Op:
    return get(face.op) if isinstance(face.op, str) else face.op


def plan(root: Module) -> list[Step]:
    """The computing nodes in forward order, each with the activations it reads."""
    steps: list[Step] = []

    def walk(m: Module, a: int) -> int:
        if isinstance(m, Sequential):
            for c in m.children:
                a = walk(c, a)
            return a
        if isinstance(m, Residual):
            b = walk(m.children[0], a)
            steps.append(Step(len(steps) + 1, m, (b, a)))
            return len(steps)
        face = m.face()
        steps.append(Step(len(steps) + 1, m, (a,), face, None if face is None else _op(face)))
        return len(steps)

    walk(root, 0)
    return steps


def estimate(steps: list[Step], loss: OpFace) -> float:
    """Seconds of symbolic work (derive and prove, one core) of every layer and the loss, by
    each op's own estimate (:meth:`Op.seconds`)."""
    total = _op(loss).seconds(**dict(loss.params)) or 0.0
    for s in steps:
        if s.op is not None and s.face is not None:
            total += s.op.seconds(**dict(s.face.params)) or 0.0
    return total


def derive_network(
    make: Callable[[], Module],
    in_shape: tuple[int, ...],
    label: int = 1,
    seed: int = 0,
    spec: str = "model()",
    verify: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
    composed: bool = True,
    tags: Sequence[str] | None = None,
    letter: str = "a",
) -> NetworkDerivation:
    """Build, guard, derive every layer, carry the numbers, check against the kernels;
    ``progress(k, n, layer)`` is called before layer ``k`` of ``n`` is derived; ``composed``:
    also derive the whole network as one expression where that is affordable
    (:mod:`derivgrad.netdoc.composed`; only with ``verify``); ``tags``: a name per computing
    node in forward order, printed as ``letter^(tag)`` instead of its number."""
    net = build(make(), in_shape, seed=seed, dtype=np.float64)
    out = net.root.shape_out
    if len(out) != 1:
        raise ParamError(
            f"--model {spec}: the network's output has shape {tuple(out)}; its loss (softmax "
            "cross-entropy) needs one axis of class scores: end with Flatten and Linear"
        )
    classes = out[0]
    if isinstance(label, bool) or not isinstance(label, int) or not 1 <= label <= classes:
        raise ParamError(
            f"--label must be one of 1..{classes} (the network's classes), got {label!r}"
        )
    steps = plan(net.root)
    if tags is not None and len(tags) != len(steps):
        raise ParamError(f"{spec}: {len(tags)} layer names for {len(steps)} layers")
    loss_face = net.loss_face(label)
    secs = estimate(steps, loss_face)
    if secs > SYMBOLIC_SECONDS_LIMIT:
        worst = max(
            (s for s in steps if s.op is not None and s.face is not None),
            key=lambda s: s.op.seconds(**dict(s.face.params)) or 0.0,  # type: ignore[union-attr]
        )
        raise ParamError(
            f"--model {spec} --input {'x'.join(map(str, in_shape))}: too large for a symbolic "
            f"derivation: about {secs:,.0f} s of symbolic work (derive and prove every layer, "
            f"one core), over the limit of {SYMBOLIC_SECONDS_LIMIT:.0f} s, most of it "
            f"{describe(worst)}; try a smaller --input or a narrower network"
        )

    x = draw(net, in_shape, seed)
    tr = trace(net, x, np.array([label - 1]))

    for s in steps:
        if s.op is not None and s.face is not None:
            if progress is not None:
                progress(s.index, len(steps), s.module.describe())
            s.d = s.sym = s.op.build(**dict(s.face.params))
            if verify:
                s.d.verify()
    last = steps[-1]
    loss = loss_sym = _op(loss_face).build(**dict(loss_face.params))
    if verify:
        loss.verify()

    # forward through the derivations alone, from the sample
    acts: dict[int, np.ndarray] = {0: exact_numbers(x[0])}
    for s in steps:
        s.x = acts[s.inputs[0]]
        if s.residual:
            acts[s.index] = exact_numbers(acts[s.inputs[0]] + acts[s.inputs[1]])
        elif s.d is not None:
            assert s.face is not None
            values = {s.face.input: _like(s.x, s.d.input_arrays[s.face.input])}
            values.update(
                {
                    k: _like(exact_numbers(s.module.params[p]), s.d.input_arrays[k])
                    for k, p in s.face.names.items()
                }
            )
            s.d = attach(s.d, values)
            acts[s.index] = exact_numbers(
                evaluate(s.d.output_array, substitutions(s.d)).reshape(s.module.shape_out)
            )
        else:  # no derivation: the kernels' own output, checked by central differences below
            acts[s.index] = exact_numbers(tr.of(s.module).y[0])  # type: ignore[index]
        s.y = acts[s.index]

    z = loss_face.input
    loss = attach(loss, {z: _like(acts[last.index], loss.input_arrays[z])})
    subs = substitutions(loss)
    loss_value = float(evaluate(loss.output_array, subs).reshape(-1)[0])
    # from the loss back through the derivations alone
    deltas: dict[int, np.ndarray] = {
        last.index: _floats(evaluate(loss.grad_array(z), subs)).reshape(last.y.shape)  # type: ignore[union-attr]
    }
    for s in reversed(steps):
        s.delta = deltas[s.index]
        if s.residual:
            back = {s.inputs[0]: s.delta, s.inputs[1]: s.delta}
        elif s.d is not None:
            assert s.face is not None
            s.d = attach(
                s.d,
                {
                    **{k: v for k, v in s.d.values.items()},
                    "upstream": _like(s.delta, s.d.output_array),
                }
                if _has_upstream(s.d)
                else dict(s.d.values),
            )
            subs = substitutions(s.d)
            s.grads = {k: _floats(evaluate(s.d.grad_array(k), subs)) for k in s.d.grad_names}
            back = {s.inputs[0]: s.grads[s.face.input].reshape(s.x.shape)}  # type: ignore[union-attr]
        else:
            r = tr.of(s.module)
            back = {s.inputs[0]: _floats(r.dx[0])}  # type: ignore[index]
        for a, g in back.items():
            deltas[a] = g if a not in deltas else _floats(deltas[a] + g)
    _compare(steps, tr, loss_value)
    nd = NetworkDerivation(
        spec,
        tuple(in_shape),
        label,
        seed,
        net,
        steps,
        loss,
        loss_value,
        x[0],
        tr.probs[0],
        tr,
        verify,
        loss_sym,
        z,
        letter=letter,
        tags={} if tags is None else {s.index: t for s, t in zip(steps, tags)},
    )
    if not composed or not verify:
        nd.composed_why = "not asked for" if not composed else "the proofs were skipped"
        return nd
    from .composed import affordable, check_composed, compose

    nd.composed_why = affordable(nd)
    if not nd.composed_why:
        if progress is not None:
            progress(len(steps), len(steps), "the whole network as one expression")
        cd = compose(nd)
        cd.verify()
        nd.composed = cd
        nd.composed_error = check_composed(nd, RTOL)
    return nd


def draw(net: Network, in_shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The sample ``(1, *in_shape)`` from ``seed``, and every parameter of ``net`` set from the
    same generator (small integers times :func:`scale`)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(INPUT_RANGE[0], INPUT_RANGE[1] + 1, (1, *in_shape)).astype(np.float64)
    for m in net.root.leaves():
        for p in m.params.values():
            p[...] = rng.integers(PARAM_RANGE[0], PARAM_RANGE[1] + 1, p.shape) * scale(p.shape)
    return x


def lively_seed(
    make: Callable[[], Module], in_shape: tuple[int, ...], label: int = 1, tries: int = 100
) -> int:
    """The first seed from 0 whose sample gives every parameter a gradient with a nonzero
    entry (a ReLU that is off everywhere, or a one-hot softmax, makes a document's numbers
    zeros that check nothing), by the kernels' pass alone (no SymPy).  Raises
    :class:`ParamError` if none of the first ``tries`` does."""
    net = build(make(), in_shape, seed=0, dtype=np.float64)
    for seed in range(tries):
        x = draw(net, in_shape, seed)
        tr = trace(net, x, np.array([label - 1]))
        if all(np.any(tr.of(m).grads[k] != 0) for m in net.root.leaves() for k in m.params):
            return seed
    raise ParamError(
        f"no seed in 0..{tries - 1} gives every parameter of this network a nonzero gradient"
    )


def scale(shape: tuple[int, ...]) -> float:
    """``2^-round(log2 sqrt(fan_in))``, fan_in the entries per output (all axes but the
    first; 1 for a vector such as a bias): a weight's entries as PyTorch would size them,
    but dyadic, so every forward number stays an exact fraction and the logits stay small
    enough that the softmax is not one-hot (a one-hot p makes every δ 0 or ±1)."""
    fan = math.prod(shape[1:]) if len(shape) > 1 else 1
    return 2.0 ** -round(math.log2(math.sqrt(fan)))


def _has_upstream(d: Derivation) -> bool:
    return any(isinstance(e, sp.Symbol) for e in np.asarray(d.upstream_array).reshape(-1))


def exact_numbers(a: Any) -> np.ndarray:
    """Numbers as SymPy numbers: a whole number exact, anything else a 53-bit float."""
    a = np.asarray(a)
    out = np.empty(a.shape, dtype=object)
    for i in np.ndindex(a.shape):
        v = a[i]
        if isinstance(v, sp.Basic) and v.is_Rational:
            out[i] = v
        else:  # a float: a dyadic fraction (the forward numbers) exactly, else 53 bits
            f = float(v)
            q = sp.Rational(f)
            out[i] = q if q.q <= 2**16 else sp.Float(f)
    return out


def _floats(a: Any) -> np.ndarray:
    """Derived numbers: exact where rational, else 53-bit floats (an irrational expression such
    as ``e^2/(1 + e^2)`` would grow with every layer it passes)."""
    a = np.asarray(a, dtype=object)
    out = np.empty(a.shape, dtype=object)
    for i in np.ndindex(a.shape):
        v = as_expr(a[i])  # a number or SymPy object, never text
        f = None if v.is_Rational else float(v)
        out[i] = v if f is None else sp.Integer(int(f)) if f.is_integer() else sp.Float(f)
    return out


def _like(a: np.ndarray, shape_of: np.ndarray) -> np.ndarray:
    """``a`` in the op's shape for it: the same entries, row-major, unit axes as the op has them."""
    want = np.asarray(shape_of).shape
    if math.prod(want) != a.size:
        raise AssertionError(f"layer face: {a.shape} does not map onto the op's {want}")
    return np.asarray(a, dtype=object).reshape(want)


def _err(derived: np.ndarray, kernel: np.ndarray) -> float:
    d = np.asarray(derived, dtype=np.float64).reshape(-1)
    k = np.asarray(kernel, dtype=np.float64).reshape(-1)
    scale = max(1.0, float(np.max(np.abs(k)))) if k.size else 1.0
    return float(np.max(np.abs(d - k))) / (RTOL * scale) if k.size else 0.0


def _compare(steps: list[Step], tr: Trace, loss_value: float) -> None:
    """Each step's derived numbers against the network's own pass: output, ∂L/∂input and
    every parameter gradient, as max |derived − kernels| in units of ``RTOL·max(1, |kernels|)``
    (≤ 1 passes).  A layer without a derivation is checked by central differences instead."""
    rng = np.random.default_rng(0)
    for s in steps:
        r = tr.of(s.module)
        assert r.y is not None and r.dy is not None and r.x is not None
        s.errors["output"] = _err(s.y, r.y[0])  # type: ignore[arg-type]
        if s.residual:
            s.errors["∂L/∂output"] = _err(s.delta, r.dy[0])  # type: ignore[arg-type]
            continue
        if s.d is None:
            res = check_layer(s.module, r.x, rng, 12)
            s.errors["backward (central differences)"] = 0.0 if res.passed else math.inf
            s.numeric_only = res.detail
            continue
        assert s.face is not None and r.dx is not None
        s.errors[f"∂L/∂{s.face.input}"] = _err(s.grads[s.face.input], r.dx[0])
        for k, p in s.face.names.items():
            s.errors[f"∂L/∂{k}"] = _err(s.grads[k], r.grads[p])
    steps[-1].errors["loss"] = abs(loss_value - tr.loss) / (RTOL * max(1.0, abs(tr.loss)))
