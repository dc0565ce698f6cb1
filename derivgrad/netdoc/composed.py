"""The whole network as one expression: every layer's op derivation composed symbolically
(each layer's forward expressions with its input replaced by the layer below's, its
parameters by the network's own symbols), the loss on top, and the layer-by-layer backward
pass (each layer's closed form with its δ replaced by the expression the layer above hands
down) as the closed form of a :class:`Derivation` whose :meth:`~Derivation.verify` proves it
equal to SymPy's derivative of the composed loss, entry by entry, for every value of the
input and the parameters.  Stronger than the per-layer proofs with a numeric composition;
affordable for small networks only (:func:`affordable`)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import sympy as sp

from ..symbolic.derivation import Derivation, Rule
from ..symbolic.proofs import Rational
from ..symbolic.tensors import symbols

# the network's derivation (derivation.NetworkDerivation, which calls this module: typed Any
# here so that the two do not import each other)
NetworkDerivation = Any

# symbols of the composed network (input and parameters): past this, its derivative is not
# attempted.  Measured on the loaded 2-core machine: a conv-pool-linear-ReLU-linear network at
# 1x4x4 (48 symbols) proves in ~13 s, one at 1x6x6 with a 4-unit hidden layer (76) in ~130 s;
# the work grows with the symbols times the terms the loss holds, which this only roughly bounds
COMPOSED_SYMBOLS_LIMIT = 50


def param_name(k: str, t: int) -> str:
    """The composed derivation's name of op input ``k`` of layer ``t`` (its JSON key)."""
    return f"{k}({t})"


def _symbol_count(nd: NetworkDerivation) -> int:
    return math.prod(nd.in_shape) + sum(
        int(p.size) for s in nd.steps if not s.residual for p in s.module.params.values()
    )


def affordable(nd: NetworkDerivation) -> str:
    """Why the composed derivative is not attempted, or "" when it is: every layer must have
    a derivation whose proof a rational-function proof covers, and the network must be small."""
    for s in nd.steps:
        if s.residual:
            continue
        if s.sym is None:
            return f"layer {s.index} ({s.module.describe()}) has no derivation"
        if not s.sym.proof.composes:
            return (
                f"layer {s.index} ({s.module.describe()}) is proved by its own method "
                f"({s.sym.proof.name}), which the composed proof does not combine"
            )
    if nd.loss_sym is None or not nd.loss_sym.proof.composes:
        return "the loss is proved by its own method"
    n = _symbol_count(nd)
    if n > COMPOSED_SYMBOLS_LIMIT:
        return (
            f"the network has {n} input and parameter entries, over the {COMPOSED_SYMBOLS_LIMIT} "
            "for which SymPy's derivative of the whole network is affordable"
        )
    return ""


def _sub(a: np.ndarray, rep: dict[Any, Any]) -> np.ndarray:
    a = np.asarray(a, dtype=object)
    out = np.empty(a.shape, dtype=object)
    for i in np.ndindex(a.shape):
        v = a[i]
        out[i] = v.xreplace(rep) if isinstance(v, sp.Basic) else v
    return out


def _bind(rep: dict[Any, Any], syms: np.ndarray, values: np.ndarray) -> None:
    syms = np.asarray(syms, dtype=object)
    values = np.asarray(values, dtype=object).reshape(syms.shape)
    for i in np.ndindex(syms.shape):
        if isinstance(syms[i], sp.Symbol):
            rep[syms[i]] = values[i]


def _same(g: np.ndarray) -> np.ndarray:
    return g


def compose(nd: NetworkDerivation) -> Derivation:
    """The composed derivation (not yet verified); :func:`affordable` must have said ""."""
    steps: list[Any] = nd.steps
    x = symbols("x", nd.in_shape)
    inputs: dict[str, np.ndarray] = {"x": x}
    acts: dict[int, np.ndarray] = {0: x}
    reps: dict[int, dict[Any, Any]] = {}
    for s in steps:
        t = s.index
        if s.residual:
            acts[t] = acts[s.inputs[0]] + acts[s.inputs[1]]
            continue
        d, face = s.sym, s.face
        assert d is not None and face is not None
        rep: dict[Any, Any] = {}
        _bind(rep, d.input_arrays[face.input], acts[s.inputs[0]])
        for k in face.names:
            own = d.input_arrays[k]
            name = param_name(k, t)
            base = str(sp.latex(sp.Symbol(k))) if len(k) > 1 else k
            inputs[name] = symbols(name, own.shape, latex=f"{{{base}}}^{{({t})}}")
            _bind(rep, own, inputs[name])
        reps[t] = rep
        acts[t] = _sub(d.output_array, rep).reshape(s.module.shape_out)
    loss = nd.loss_sym
    assert loss is not None
    z = nd.loss_face_input
    lrep: dict[Any, Any] = {}
    _bind(lrep, loss.input_arrays[z], acts[steps[-1].index])
    L = _sub(loss.output_array, lrep).reshape(1)
    deltas = {steps[-1].index: _sub(loss.grad_array(z), lrep).reshape(acts[steps[-1].index].shape)}
    grads: dict[str, np.ndarray] = {}
    for s in reversed(steps):
        t = s.index
        delta = deltas[t]
        if s.residual:
            back = {s.inputs[0]: delta, s.inputs[1]: delta}
        else:
            d, face = s.sym, s.face
            assert d is not None and face is not None
            rep = dict(reps[t])
            _bind(rep, d.upstream_array, delta)
            back = {
                s.inputs[0]: _sub(d.grad_array(face.input), rep).reshape(
                    delta.shape[:0] + acts[s.inputs[0]].shape
                )
            }
            for k in face.names:
                grads[param_name(k, t)] = _sub(d.grad_array(k), rep).reshape(
                    inputs[param_name(k, t)].shape
                )
        for a, g in back.items():
            deltas[a] = g if a not in deltas else deltas[a] + g
    grads["x"] = deltas[0]
    lemmas = [lem for s in steps if s.sym is not None for lem in s.sym.proof.lemmas]
    lemmas += list(loss.proof.lemmas)
    rules = {
        k: Rule("the layer-by-layer backward pass, composed", functools.partial(_same, g))
        for k, g in grads.items()
    }
    return Derivation(
        op="network",
        params={},
        inputs=inputs,
        output=L,
        upstream=np.array([sp.Integer(1)], dtype=object),
        rules=rules,
        proof=Rational(lemmas=lemmas),
    )


def check_composed(nd: NetworkDerivation, rtol: float) -> float:
    """The composed closed forms evaluated at the sample and the parameters (the exact numbers
    the layers' derivations read) against the numbers the layers handed down, as
    max |composed − layer by layer| in units of ``rtol·max(1, |composed|)``."""
    from ..documents.instance import attach, evaluate, substitutions

    cd = nd.composed
    assert cd is not None
    first = nd.steps[0]
    values = {"x": np.asarray(first.x, dtype=object).reshape(cd.input_arrays["x"].shape)}
    ours: dict[str, np.ndarray] = {}
    for s in nd.steps:
        if s.face is None or s.residual:
            continue
        for k in s.face.names:
            values[param_name(k, s.index)] = s.d.values[k]
            ours[param_name(k, s.index)] = s.grads[k]
    if not any(0 in s.inputs for s in nd.steps[1:]):  # x read by the first layer only
        ours["x"] = first.grads[first.face.input]
    d = attach(cd, values)
    subs = substitutions(d)
    worst = 0.0
    for name, mine in ours.items():
        exact = np.asarray(evaluate(d.grad_array(name), subs), dtype=np.float64).reshape(-1)
        got = np.asarray(mine, dtype=np.float64).reshape(-1)
        scale = max(1.0, float(np.max(np.abs(exact)))) if exact.size else 1.0
        worst = max(worst, float(np.max(np.abs(got - exact))) / (rtol * scale))
    loss = float(np.asarray(evaluate(d.output_array, subs), dtype=np.float64).reshape(-1)[0])
    return max(worst, abs(loss - nd.loss_value) / (rtol * max(1.0, abs(loss))))
