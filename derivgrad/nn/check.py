"""A network's gradients held to independent references, in float64 on a small batch:

- the whole network's backward (kernels) against central differences of its forward loss
  (softmax cross-entropy), on every parameter (at most ``entries`` entries of each, drawn);
- each layer's backward against central differences of that layer alone, on the input it
  saw in the network, so that a wrong gradient is named by its layer;
- each defined layer's generated kernels against its op's symbolic ground truth
  (:meth:`derivgrad.notation.DefinedOp.check`, on the op's example sizes and around them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParamError
from .defined import Defined
from .layers import Module, Shape
from .network import build

EPS = 1e-6
# float64 central differences: truncation ~EPS^2, rounding ~1e-16/EPS of the loss's size
RTOL, ATOL = 1e-5, 1e-7


@dataclass
class Result:
    what: str  # "network" or "layer 3.0.1 (Defined ...)"
    reference: str
    passed: bool
    worst: float  # largest |kernel - reference| / (ATOL + RTOL |reference|)
    detail: str = ""


def _compare(what: str, ref: str, pairs: list[tuple[str, np.ndarray, np.ndarray]]) -> Result:
    worst, detail = 0.0, ""
    for name, got, want in pairs:
        r = np.abs(got - want) / (ATOL + RTOL * np.abs(want))
        if r.size and float(r.max()) > worst:
            worst = float(r.max())
            i = int(r.argmax())
            detail = f"{name}: kernel {got.flat[i]:.8g} vs reference {want.flat[i]:.8g}"
    return Result(what, ref, worst <= 1.0, worst, detail if worst > 1.0 else "")


def _entries(rng: np.random.Generator, n: int, entries: int) -> np.ndarray:
    return np.arange(n) if n <= entries else np.sort(rng.choice(n, entries, replace=False))


def _numeric(f: Callable[[], float], a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Central differences of ``f`` in the entries ``idx`` of ``a`` (changed in place, restored)."""
    flat, out = a.reshape(-1), np.empty(len(idx))
    for j, i in enumerate(idx):
        v = flat[i]
        flat[i] = v + EPS
        hi = f()
        flat[i] = v - EPS
        lo = f()
        flat[i] = v
        out[j] = (hi - lo) / (2 * EPS)
    return out


def check_network(
    make: Callable[[], Module],
    in_shape: Shape,
    batch: int = 2,
    seed: int = 0,
    entries: int = 12,
    examples: int = 3,
) -> list[Result]:
    from derivgrad import kernels as K

    net = build(make(), in_shape, seed=seed, dtype=np.float64)
    rng = np.random.default_rng([seed, 1])
    x = rng.standard_normal((batch, *in_shape))
    if len(net.root.shape_out) != 1:
        raise ParamError(
            f"the network's output has shape {net.root.shape_out}; the check's loss (softmax "
            f"cross-entropy) needs one axis of class scores: end with Flatten and Linear"
        )
    classes = net.root.shape_out[0]
    labels = rng.integers(0, classes, batch)

    def loss() -> float:
        return float(K.softmax_cross_entropy_forward(net.forward(x, train=True), labels)[0])

    net.loss_and_grads(x, labels)
    grads = {k: v.copy() for k, v in net.named_grads().items()}
    pairs = []
    for k, p in net.named_params().items():
        idx = _entries(rng, p.size, entries)
        pairs.append((k, grads[k].reshape(-1)[idx], _numeric(loss, p, idx)))
    results = [_compare("network", "central differences of the loss", pairs)]

    # each layer on the input it saw: record the inputs with one forward pass
    seen: dict[int, np.ndarray] = {}
    leaves = list(net.root.leaves())
    for m in leaves:  # an instance attribute shadows the method for one pass
        setattr(m, "forward", _recording(m, seen))  # noqa: B010 (mypy: no method assignment)
    try:
        net.forward(x, train=True)
    finally:
        for m in leaves:
            delattr(m, "forward")
    for m in leaves:
        results.append(check_layer(m, seen[id(m)], rng, entries))
        if isinstance(m, Defined):
            results.append(_check_defined(m, examples, seed))
    return results


def _recording(m: Module, seen: dict[int, np.ndarray]) -> Callable[[np.ndarray, bool], Any]:
    forward = type(m).forward

    def record(a: np.ndarray, train: bool) -> Any:
        seen[id(m)] = a.copy()
        return forward(m, a, train)

    return record


def check_layer(m: Module, a: np.ndarray, rng: np.random.Generator, entries: int) -> Result:
    """``m``'s backward against central differences of ``m`` alone at input ``a``."""
    a = a.copy()
    dy = rng.standard_normal(m.forward(a, True).shape)

    def f() -> float:
        return float(np.sum(m.forward(a, True) * dy))

    m.forward(a, True)
    dx = m.backward(dy.copy())
    grads = {k: v.copy() for k, v in m.grads.items()}
    idx = _entries(rng, a.size, entries)
    pairs = [("input", np.asarray(dx).reshape(-1)[idx], _numeric(f, a, idx))]
    for k, p in m.params.items():
        idx = _entries(rng, p.size, entries)
        pairs.append((k, grads[k].reshape(-1)[idx], _numeric(f, p, idx)))
    return _compare(f"layer {m.name} ({m.describe()})", "central differences", pairs)


def _check_defined(m: Defined, examples: int, seed: int) -> Result:
    op = m.op
    res = op.check(
        lambda dy, **v: op.backward(dy, **v), examples=examples, seed=seed, raise_on_failure=False
    )
    return Result(
        f"layer {m.name} ({m.describe()})",
        "symbolic ground truth",
        bool(res.passed),
        0.0,
        "" if res.passed else str(res.message),
    )


def table(results: list[Result]) -> str:
    rows = [f"{'ok' if r.passed else 'FAIL':4s}  {r.what}  [{r.reference}]" for r in results]
    rows += [f"      {r.detail}" for r in results if not r.passed and r.detail]
    return "\n".join(rows)


def failed_layers(results: list[Any]) -> list[str]:
    return [r.what for r in results if not r.passed and r.what != "network"]
