r"""The convolution's compact rules as data: one expression tree per gradient, which the
closed form evaluates (so ``verify()`` proves it), the document prints (so the text is the
proved rule at the printed instance) and the tests evaluate on numbers against the kernels.

For one sample, one channel and one filter along each spatial axis, with ``n`` the input
size, ``k`` the kernel, stride ``s``, padding ``p``, dilation ``d``, ``o`` outputs and
``r = n + 2p - ((o - 1) s + d (k - 1) + 1)`` rows past the last window (``r > 0`` when s
does not divide ``n + 2p - d(k - 1) - 1``):

* ``dX = crop_p(pad_{d(k-1), d(k-1)+r}(dilate_s(δ)) ⋆ rot180(dilate_d(W)))``: the full
  correlation of the dilated δ with the turned, dilated filter; the ``r`` extra zeros give
  the rows no window reached their gradient, 0.
* ``dW = pad_{p, p-r}(X) ⋆_d dilate_s(δ)``: the padded input, less its last ``r`` rows, correlated
  at stride ``d`` with the dilated δ (stride and dilation swap roles).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from derivgrad.kernels import output_size, window_span

from ..symbolic.tensors import correlate, dilate, flip, pad


def per_axis(values: Sequence[int]) -> str:
    """One subscript for a per-axis value: ``2`` when every axis has it, else ``2×1`` (rows
    × columns, as sizes are written)."""
    return str(values[0]) if len(set(values)) == 1 else "{\\times}".join(map(str, values))


class Expr:
    """A node of a rule: ``tex()`` prints it, ``evaluate(env)`` computes it on object arrays
    of one sample's spatial axes (symbols or numbers).  The arrays may carry one leading axis
    of summands (filters for dX, samples for dW): every node acts on the trailing spatial
    axes, and :class:`Correlate` sums over the leading one — the rule summed over it, in one
    sum per entry."""

    def tex(self) -> str:
        raise NotImplementedError

    def evaluate(self, env: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class Var(Expr):
    name: str  # a key of env: "x", "w" or "delta"
    latex: str

    def tex(self) -> str:
        return self.latex

    def evaluate(self, env: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(env[self.name], dtype=object)


@dataclass(frozen=True)
class Dilate(Expr):
    arg: Expr
    by: tuple[Any, ...]

    def tex(self) -> str:
        if all(b == 1 for b in self.by):
            return self.arg.tex()
        return r"\operatorname{dilate}_{%s}(%s)" % (per_axis(self.by), self.arg.tex())

    def evaluate(self, env: Mapping[str, np.ndarray]) -> np.ndarray:
        return dilate(self.arg.evaluate(env), self.by)


@dataclass(frozen=True)
class Pad(Expr):
    """Zeros before and after along each axis; a negative width removes entries."""

    arg: Expr
    before: tuple[Any, ...]
    after: tuple[Any, ...]

    def tex(self) -> str:
        if all(b == 0 for b in self.before + self.after):
            return self.arg.tex()
        if self.before == self.after:
            sub = per_axis(self.before)
        else:  # (zeros before, zeros after)
            sub = "(%s,\\, %s)" % (per_axis(self.before), per_axis(self.after))
        return r"\operatorname{pad}_{%s}(%s)" % (sub, self.arg.tex())

    def evaluate(self, env: Mapping[str, np.ndarray]) -> np.ndarray:
        a = self.arg.evaluate(env)
        a = pad(a, [(max(b, 0), max(e, 0)) for b, e in zip(self.before, self.after)])
        lead = (slice(None),) * (a.ndim - len(self.before))
        return a[
            lead
            + tuple(
                slice(-b if b < 0 else 0, n + e if e < 0 else n)
                for b, e, n in zip(self.before, self.after, a.shape[len(lead) :])
            )
        ]


@dataclass(frozen=True)
class Turn(Expr):
    """rot180 of a 2-D filter, flip of a 1-D one (the notes' words)."""

    arg: Expr
    ndim: int

    def tex(self) -> str:
        name = "rot180" if self.ndim == 2 else "flip"
        return r"\operatorname{%s}(%s)" % (name, self.arg.tex())

    def evaluate(self, env: Mapping[str, np.ndarray]) -> np.ndarray:
        a = self.arg.evaluate(env)
        return flip(a, tuple(range(-self.ndim, 0)))


@dataclass(frozen=True)
class Correlate(Expr):
    """Valid cross-correlation of ``arg`` with ``filt`` at ``stride`` (no padding)."""

    arg: Expr
    filt: Expr
    stride: tuple[Any, ...]

    def tex(self) -> str:
        star = (
            r"\star" if all(s == 1 for s in self.stride) else r"\star_{%s}" % per_axis(self.stride)
        )
        return f"{self.arg.tex()} {star} {self.filt.tex()}"

    def evaluate(self, env: Mapping[str, np.ndarray]) -> np.ndarray:
        a, f = self.arg.evaluate(env), self.filt.evaluate(env)
        ndim = len(self.stride)
        if a.ndim == ndim:  # one summand
            a, f = a[None], f[None]
        return correlate(a, f[None], self.stride, (1,) * ndim)[0]


@dataclass(frozen=True)
class Crop(Expr):
    """Drop ``by`` entries at both ends of each axis (the forward padding)."""

    arg: Expr
    by: tuple[Any, ...]

    def tex(self) -> str:
        if all(b == 0 for b in self.by):
            return self.arg.tex()
        return r"\operatorname{crop}_{%s}\big(%s\big)" % (per_axis(self.by), self.arg.tex())

    def evaluate(self, env: Mapping[str, np.ndarray]) -> np.ndarray:
        a = self.arg.evaluate(env)
        lead = (slice(None),) * (a.ndim - len(self.by))
        return a[lead + tuple(slice(b, n - b) for b, n in zip(self.by, a.shape[len(lead) :]))]


@dataclass(frozen=True)
class Geometry:
    """One axis set of a convolution: sizes per spatial axis."""

    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]

    @property
    def out(self) -> tuple[int, ...]:
        return tuple(
            output_size(n, k, s, p, d)
            for n, k, s, p, d in zip(
                self.size, self.kernel, self.stride, self.padding, self.dilation
            )
        )

    @property
    def rest(self) -> tuple[int, ...]:
        """Rows (per axis) of the padded input past the last window."""
        return tuple(
            n + 2 * p - ((o - 1) * s + window_span(k, d))
            for n, k, s, p, d, o in zip(
                self.size, self.kernel, self.stride, self.padding, self.dilation, self.out
            )
        )


@dataclass(frozen=True)
class Rule:
    """A printed rule: ``lhs = expr``."""

    lhs: str
    expr: Expr

    def tex(self) -> str:
        return f"{self.lhs} = {self.expr.tex()}"


def rules(g: Geometry) -> dict[str, Rule]:
    """``{"x": dX rule, "w": dW rule}`` for one sample, channel and filter of geometry ``g``,
    with the instance's numbers in every subscript."""
    ndim = len(g.size)
    span = tuple(d * (k - 1) for k, d in zip(g.kernel, g.dilation))
    return _build(
        ndim,
        g.stride,
        g.padding,
        g.dilation,
        span,
        tuple(a + r for a, r in zip(span, g.rest)),
        tuple(p - r for p, r in zip(g.padding, g.rest)),
    )


def general_rules(ndim: int) -> dict[str, Rule]:
    """The same trees with letters for the numbers (for printing only): stride s, padding
    p, dilation d, filter size f, r rows past the last window."""

    def each(v: str) -> tuple[str, ...]:
        return (v,) * ndim

    return _build(
        ndim, each("s"), each("p"), each("d"), each("d(f-1)"), each("d(f-1)+r"), each("p-r")
    )


def _build(
    ndim: int,
    stride: tuple[Any, ...],
    padding: tuple[Any, ...],
    dilation: tuple[Any, ...],
    before: tuple[Any, ...],
    after: tuple[Any, ...],
    x_after: tuple[Any, ...],
) -> dict[str, Rule]:
    delta, w, x = Var("delta", r"\delta"), Var("w", "w"), Var("x", "x")
    full = Pad(Dilate(delta, stride), before, after)
    dx = Crop(Correlate(full, Turn(Dilate(w, dilation), ndim), (1,) * ndim), padding)
    dw = Correlate(Pad(x, padding, x_after), Dilate(delta, stride), dilation)
    return {
        "x": Rule(r"\frac{\partial L}{\partial x}", dx),
        "w": Rule(r"\frac{\partial L}{\partial w}", dw),
    }


# -- channels, filters and a batch (worked problem 8, stride 1, no padding) --------------------
# Sample n, input channel c, output channel c' (the notes' names); the filter w_{c',c} is the
# slice of w that reads channel c into channel c'.  Each form is one of the one-channel trees
# above, applied per slice and summed, so the tests evaluate exactly what is printed.


def channel_rules(kernel_less_one: tuple[Any, ...] = ("K-1", "K-1")) -> dict[str, tuple[str, Expr]]:
    """``{"y", "x", "w", "wT"}``: ``(sum, tree)`` of the per-slice forms of the forward pass
    and both gradients, the sum printed before the tree: ``y_{n,c'} = Σ_c x_{n,c} ⋆ w_{c',c}``,
    ``dX_{n,c} = Σ_{c'} pad_{K−1}(δ_{n,c'}) ⋆ wᵀ_{c,c'}`` with ``wᵀ_{c,c'} = rot180(w_{c',c})``
    (the transposed kernel: channels swapped, the filter turned), ``dw_{c',c} = Σ_n x_{n,c} ⋆
    δ_{n,c'}``.  ``kernel_less_one``: the padding, letters to print, numbers to evaluate."""
    ndim = len(kernel_less_one)
    one = (1,) * ndim
    x, w = Var("x", "x_{n,c}"), Var("w", "w_{c',c}")
    delta, wT = Var("delta", r"\delta_{n,c'}"), Var("wT", r"w^{\top}_{c,c'}")
    return {
        "y": (r"\sum_{c=1}^{C}", Correlate(x, w, one)),
        "x": (
            r"\sum_{c'=1}^{C'}",
            Correlate(Pad(delta, kernel_less_one, kernel_less_one), wT, one),
        ),
        "wT": ("", Turn(w, ndim)),
        "w": (r"\sum_{n=1}^{N}", Correlate(x, delta, one)),
    }


def evaluate_channel_rules(
    x: np.ndarray, w: np.ndarray, delta: np.ndarray
) -> dict[str, np.ndarray]:
    """The forms of :func:`channel_rules` on arrays ``x`` (N, C, …), ``w`` (C', C, …) and
    ``delta`` (N, C', …): ``{"y", "x", "w", "wT"}``, each slice computed by its printed tree."""
    n_, c_ = x.shape[:2]
    o_ = w.shape[0]
    forms = channel_rules(tuple(k - 1 for k in w.shape[2:]))
    tree = {k: t for k, (_, t) in forms.items()}
    wT = np.empty((c_, o_) + w.shape[2:], dtype=object)
    for c in range(c_):
        for o in range(o_):
            wT[c, o] = tree["wT"].evaluate({"w": w[o, c]})
    out: dict[str, np.ndarray] = {"wT": wT}
    out["y"] = np.array(
        [
            [
                sum(tree["y"].evaluate({"x": x[n, c], "w": w[o, c]}) for c in range(c_))
                for o in range(o_)
            ]
            for n in range(n_)
        ]
    )
    out["x"] = np.array(
        [
            [
                sum(tree["x"].evaluate({"delta": delta[n, o], "wT": wT[c, o]}) for o in range(o_))
                for c in range(c_)
            ]
            for n in range(n_)
        ]
    )
    out["w"] = np.array(
        [
            [
                sum(tree["w"].evaluate({"x": x[n, c], "delta": delta[n, o]}) for n in range(n_))
                for c in range(c_)
            ]
            for o in range(o_)
        ]
    )
    return out
