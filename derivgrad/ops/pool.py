r"""Symbolic max and average pooling (worked problem 10).

Max pooling is piecewise.  The forward is ``WindowMax`` of each window's entries (row-major,
padding excluded, i.e. −∞); its derivative is the indicator ``FirstMax`` of the window's
*first* maximum, the kernels' rule (SymPy's ``Max`` would split ties with
Heaviside(0) = 1/2).  The closed form routes ``δ`` to the arg-max:
``dX[p] = Σ_{windows w ∋ p} δ_w · 1[p is the first maximum of w]``.  With ``region=SEED``
the derivation is also specialised to one region of input space — the arg-max of every
window fixed by a seeded random ordering of the inputs — where the indicators become 0/1
and the routing is explicit.

Average pooling divides by the full window ``K_H K_W`` (padding counted) and spreads
``δ/(K_H K_W)`` evenly; for K = S without padding, dX is δ upsampled, divided by K².
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from derivgrad import kernels as K
from derivgrad.kernels import output_size

from ..documents.document import Block, indexed
from ..symbolic.derivation import Derivation, Rule
from ..symbolic.functions import FirstMaxRule, WindowMax
from ..symbolic.params import ParamError, check_unknown, count, pair
from ..symbolic.shapes import pool_layer
from ..symbolic.tensors import symbols, zeros
from .base import Op, Param, Problem, symbolic_work

_WINDOW = (
    Param("input", "size", "input size, an int or HxW"),
    Param("kernel", "size", "window size, an int or KHxKW"),
    Param("stride", "size", "stride (default: the window size)"),
    Param("padding", "size", "padding on each side, at most half the window"),
    Param("channels", "int", "input channels"),
)
_REGION = Param("region", "int", "fix every window's arg-max by this seed (explicit routing)")
PARAMS = tuple(p.name for p in (*_WINDOW, _REGION))


def _windows(op, params):
    check_unknown(op, params, PARAMS)
    H, W = pair(op, "input", params.get("input", (4, 4)), 1)
    k = pair(op, "kernel", params.get("kernel", (2, 2)), 1)
    s = pair(op, "stride", params.get("stride", k), 1)
    p = pair(op, "padding", params.get("padding", 0), 0)
    C = count(op, "channels", params.get("channels", 1))
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        raise ParamError(
            f"{op}: padding must be at most half the kernel, got padding {p} for kernel {k}"
        )
    HO, WO = (output_size(n, kk, ss, pp) for n, kk, ss, pp in zip((H, W), k, s, p))
    if min(HO, WO) < 1:
        raise ParamError(
            f"{op}: a {k[0]}x{k[1]} window does not fit a {H}x{W} input with padding {p}"
        )
    x = symbols("x", (C, H, W) if C > 1 else (H, W))
    x3 = x.reshape(C, H, W)
    wins = window_positions(C, H, W, k, s, p, HO, WO)
    d = symbols("d", (C, HO, WO) if C > 1 else (HO, WO), latex=r"\delta")
    return dict(H=H, W=W, k=k, s=s, p=p, C=C, HO=HO, WO=WO), x, x3, wins, d, d.reshape(C, HO, WO)


def rule_maxpool_dx(
    x3: np.ndarray, d3: np.ndarray, wins: dict[tuple[int, int, int], list[tuple[int, int, int]]]
) -> np.ndarray:
    """Route each ``δ`` of window ``w`` to the window's first maximum: ``dX[p] = Σ_w δ_w ·
    FirstMaxRule(p, window entries)`` (the comparisons ``x_p > every earlier entry, x_p >=
    every later one``); ``wins`` maps output index → input positions."""
    out = zeros(x3.shape)
    for key, pos in wins.items():
        vals = [x3[q] for q in pos]
        for m, q in enumerate(pos):
            out[q] = out[q] + d3[key] * FirstMaxRule(sp.Integer(m), *vals)
    return out


def window_positions(
    C: int,
    H: int,
    W: int,
    k: tuple[int, int],
    s: tuple[int, int],
    p: tuple[int, int],
    HO: int,
    WO: int,
) -> dict[tuple[int, int, int], list[tuple[int, int, int]]]:
    """Input positions ``(c, i, j)`` of each pooling window, padding left out (row-major)."""
    return {
        (c, i, j): [
            (c, a, b)
            for a in range(i * s[0] - p[0], i * s[0] - p[0] + k[0])
            for b in range(j * s[1] - p[1], j * s[1] - p[1] + k[1])
            if 0 <= a < H and 0 <= b < W
        ]
        for c, i, j in itertools.product(range(C), range(HO), range(WO))
    }


def maxpool2d(**params: Any) -> Derivation:
    op = "maxpool2d"
    g, x, x3, wins, d, d3 = _windows(op, params)
    y = np.empty((g["C"], g["HO"], g["WO"]), dtype=object)
    for key, pos in wins.items():
        y[key] = WindowMax(*[x3[q] for q in pos])

    dX = lambda: rule_maxpool_dx(x3, d3, wins).reshape(x.shape)
    region = params.get("region")
    notes = [
        "the chain rule differentiates the window maximum, by derivgrad's convention at ties, "
        "into the first-maximum indicator, the closed form states that rule as comparisons; "
        "the two indicators were proved equal by cases, over every way each other entry of a "
        "window can compare with $x_p$: less, equal or greater"
    ]
    extra: dict[str, Any] = dict(windows=wins)
    if region is not None:
        # One region of input space: a seeded ordering of the inputs fixes every arg-max.
        rng = np.random.default_rng(count(op, "region", region, 0))
        rank = rng.permutation(x3.size).reshape(x3.shape)
        extra["region_point"] = {x3[q]: sp.Integer(int(rank[q])) for q in np.ndindex(*x3.shape)}
        notes.append(
            f"Region {region}: every window's arg-max fixed by the ordering of a seeded "
            f"random permutation of the inputs."
        )
    return Derivation(
        op=op,
        params=dict(
            input=(g["H"], g["W"]),
            kernel=g["k"],
            stride=g["s"],
            padding=g["p"],
            channels=g["C"],
            region=region,
        ),
        inputs={"x": x},
        output=y.reshape(d.shape),
        upstream=d,
        rules={
            "x": Rule(
                "dX[p] = Σ_w δ_w · 1[p = argmax_w], summed over the windows w ∋ p, the arg-max "
                "being the first maximum in row-major order",
                dX,
            )
        },
        notes=notes,
        extra=extra,
    )


def routed(der: Derivation) -> np.ndarray:
    """The closed-form input gradient of a ``maxpool2d(region=SEED)`` derivation with every
    window's first maximum fixed by the region's ordering: 0/1 indicators, explicit routing."""
    point = der.extra.get("region_point")
    if point is None:
        raise ValueError("routed() needs a maxpool2d derivation built with region=SEED")
    fix = lambda e: e.replace(
        lambda a: isinstance(a, FirstMaxRule),
        lambda a: FirstMaxRule(a.args[0], *[v.xreplace(point) for v in a.args[1:]]),
    )
    return np.vectorize(fix, otypes=[object])(der.grad_array("x"))


def avgpool2d(**params: Any) -> Derivation:
    op = "avgpool2d"
    g, x, x3, wins, d, d3 = _windows(op, params)
    K = g["k"][0] * g["k"][1]
    y = np.empty((g["C"], g["HO"], g["WO"]), dtype=object)
    for key, pos in wins.items():
        y[key] = sp.Add(*[x3[q] for q in pos]) / K

    def dX():
        out = zeros(x3.shape)
        for key, pos in wins.items():
            for q in pos:
                out[q] = out[q] + d3[key] / K
        return out.reshape(x.shape)

    return Derivation(
        op=op,
        params=dict(
            input=(g["H"], g["W"]), kernel=g["k"], stride=g["s"], padding=g["p"], channels=g["C"]
        ),
        inputs={"x": x},
        output=y.reshape(d.shape),
        upstream=d,
        rules={"x": Rule(f"dX[p] = Σ_w δ_w / {K}, each δ spread evenly over its window w ∋ p", dX)},
        notes=["padded zeros count in the window size, as count_include_pad=True does in PyTorch"],
    )


def upsampled(der: Derivation) -> np.ndarray | None:
    """For windows that tile the input (K = S, no padding, sizes divisible by K): δ upsampled,
    each entry repeated over its K×K block, divided by K², checked equal to the closed form
    (raises ``AssertionError`` if not); ``None`` when the windows do not tile the input."""
    P = der.params
    k, s, p, (H, W) = P["kernel"], P["stride"], P["padding"], P["input"]
    if k != s or any(p) or H % k[0] or W % k[1]:
        return None
    delta = der.upstream_array.reshape((-1,) + der.upstream_array.shape[-2:])
    up = np.stack([np.kron(c, np.ones(k, dtype=int)) for c in delta]) / (k[0] * k[1])
    up = up.reshape(der.grad_array("x").shape)
    for a, c in zip(up.reshape(-1), der.grad_array("x").reshape(-1)):
        if sp.expand(a - c) != 0:
            raise AssertionError(f"avgpool2d: upsampled δ gives {a}, the closed form {c}")
    return up


def _upsampled_section(der: Derivation) -> list[Block]:
    up = upsampled(der)
    if up is None:
        return []
    k = der.params["kernel"]
    out: list[Block] = [
        ("h", (2, "Windows that tile the input: upsampling")),
        (
            "p",
            f"With $K = S$ and no padding the windows do not overlap and cover the input, so "
            f"each entry of $\\partial L / \\partial x$ receives one $\\delta$: "
            f"$\\partial L/\\partial x$ is $\\delta$ upsampled (each entry repeated over its "
            f"${k[0]} \\times {k[1]}$ block) and divided by $K^2 = {k[0] * k[1]}$"
            + (", channel by channel" if up.ndim == 3 else "")
            + ", the matrix of the closed form above (checked equal to it, entry by entry):",
        ),
        (
            "eq",
            [
                (
                    r"\frac{\partial L}{\partial x}",
                    [r"\frac{1}{%d} \operatorname{upsample}(\delta)" % (k[0] * k[1])],
                )
            ],
        ),
    ]
    return out


TIE_RULE = (
    r"At a tie the window maximum is not differentiable: its one-sided derivatives differ, and "
    r"routing $\delta$ to any one of the tied entries gives a valid subgradient. derivgrad "
    r"takes a convention, the one its kernels (and PyTorch's) follow: the first maximum in "
    r"row-major order (left to right, then top to bottom), the entry that is strictly greater "
    r"than every entry before it in the window and at least as large as every entry after it. "
    r"The proof below shows that the closed form equals the chain rule under this convention "
    r"(the derivative of the maximum is defined by it). The notes' eq. (6) writes "
    r"$\mathbf{1}[x_p = \max(w)]$: the same where the maximum is unique, but at a tie it "
    r"routes $\delta$ to every tied entry, so four equal inputs in a $2 \times 2$ window "
    r"would receive $4\delta$ in all, where the first-maximum rule passes $\delta$ once."
)


def _ties(d: Derivation) -> list[Block]:
    """The tied windows of a numeric instance, each with where its δ goes (none without
    values or without ties)."""
    if not getattr(d, "values", None) or "x" not in d.values:
        return []
    wins = d.extra["windows"]
    C = max(key[0] for key in wins) + 1
    xv = np.asarray(d.values["x"], dtype=object)
    xv = xv.reshape((C,) + xv.shape[-2:])

    def name(q: tuple[int, int, int]) -> str:
        return "$" + indexed("x", q if C > 1 else q[1:]) + "$"

    said = []
    for key, pos in wins.items():
        top = max(xv[q] for q in pos)
        tied = [q for q in pos if xv[q] == top]
        if len(tied) > 1:
            delta = "$" + indexed(r"\delta", key if C > 1 else key[1:]) + "$"
            said.append(
                f"the window of {delta} has its maximum {top} at "
                + ", ".join(map(name, tied))
                + f"; {delta} goes to {name(tied[0])} only (the notes' indicator would pass it "
                f"to all {len(tied)})"
            )
    if not said:
        return [("p", "No window of this instance has a tie.")]
    return [("p", "Ties in this instance: " + "; ".join(said) + ".")]


# -- the op protocol ---------------------------------------------------------------------------
@st.composite
def _window(draw: Any) -> dict[str, Any]:
    """Kernel, then stride (overlapping windows too), padding <= k/2, then a size that fits."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, k[0])), draw(st.integers(1, k[1])))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    size = (
        draw(st.integers(max(1, k[0] - 2 * p[0]), 5)),
        draw(st.integers(max(1, k[1] - 2 * p[1]), 5)),
    )
    return dict(input=size, kernel=k, stride=s, padding=p, channels=draw(st.integers(1, 2)))


class _Pool(Op):
    params: ClassVar[tuple[Param, ...]] = _WINDOW
    problems = "10"

    def cost(self, **params: Any) -> int:
        op = self.name
        H, W = pair(op, "input", params.get("input", (4, 4)), 1)
        k = pair(op, "kernel", params.get("kernel", (2, 2)), 1)
        s = pair(op, "stride", params.get("stride", k), 1)
        p = pair(op, "padding", params.get("padding", 0), 0)
        C = count(op, "channels", params.get("channels", 1))
        HO, WO = ((n + 2 * pp - kk) // ss + 1 for n, kk, ss, pp in zip((H, W), k, s, p))
        K = k[0] * k[1]
        outputs = C * max(HO, 0) * max(WO, 0)
        # each window's maximum differentiates into a K-way indicator for each of its K entries
        return symbolic_work(outputs, K, K, C * H * W)

    def strategy(self) -> st.SearchStrategy[dict[str, Any]]:
        return _window()

    def shapes(self, **params: Any) -> str:
        size = pair(f"shapes {self.name}", "input", params.get("input") or "32x32", 1)
        channels = params.get("channels")
        C = 1 if channels is None else count(f"shapes {self.name}", "channels", channels)
        kk = params.get("kernel")
        k = 2 if kk is None else count(f"shapes {self.name}", "kernel", kk)
        ss = params.get("stride")
        s = None if ss is None else count(f"shapes {self.name}", "stride", ss)
        if k > min(size):
            raise ParamError(
                f"shapes {self.name}: a {k}x{k} window does not fit a {size[0]}x{size[1]} input"
            )
        return json.dumps(pool_layer(size, C, k, s))

    def _x(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        return values["x"].reshape((1, -1) + values["x"].shape[-2:])


class MaxPool2d(_Pool):
    name = "maxpool2d"
    us_per_step = 600.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Max pooling"
    params = (*_WINDOW, _REGION)

    def build(self, **params: Any) -> Derivation:
        return maxpool2d(**params)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        P, x = d.params, self._x(values)
        y, idx = K.maxpool2d_forward(x, P["kernel"], P["stride"], P["padding"])
        dx = K.maxpool2d_backward(upstream.reshape(y.shape), idx, x.shape)
        return y.reshape(upstream.shape), {"x": dx.reshape(values["x"].shape)}

    def values(self, d: Derivation, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # a permutation of well-separated values: no ties, and a step of 1e-5 cannot change
        # a window's winner (a central difference across a switch measures nothing)
        shape = d.inputs["x"].shape
        size = int(np.prod(shape))
        return {"x": (rng.permutation(size) / size - 0.5).reshape(shape)}

    def sections(self, d: Derivation) -> list[Block]:
        return [("h", (2, "Ties: a convention")), ("p", TIE_RULE), *_ties(d)]

    def worked_problems(self) -> list[Problem]:
        return [
            Problem("10", "Max pooling backward", params=dict(input=(4, 4), kernel=2)),
            Problem(
                "10c",
                "Max pooling with tied windows, with numbers",
                params=dict(input=(4, 4), kernel=2),
                # every window ties: two, three, two and three equal maxima
                values=dict(
                    x=[[1, 3, 2, 2], [0, 3, 2, 1], [4, 1, 0, 5], [2, 4, 5, 5]],
                    upstream=[[1, 2], [3, 4]],
                ),
                source="worked problem 10 at a tie",
            ),
        ]


class AvgPool2d(_Pool):
    name = "avgpool2d"
    us_per_step = 100.0  # measured: the table at SYMBOLIC_SECONDS_LIMIT (ops/base.py)
    title = "Average pooling"

    def build(self, **params: Any) -> Derivation:
        return avgpool2d(**params)

    def kernel(
        self, d: Derivation, values: Mapping[str, np.ndarray], upstream: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        P, x = d.params, self._x(values)
        y = K.avgpool2d_forward(x, P["kernel"], P["stride"], P["padding"])
        dy = upstream.reshape(y.shape)
        dx = K.avgpool2d_backward(dy, x.shape, P["kernel"], P["stride"], P["padding"])
        return y.reshape(upstream.shape), {"x": dx.reshape(values["x"].shape)}

    def sections(self, d: Derivation) -> list[Block]:
        return _upsampled_section(d)

    def worked_problems(self) -> list[Problem]:
        return [Problem("10b", "Average pooling backward", params=dict(input=(4, 4), kernel=2))]


OPS = (MaxPool2d(), AvgPool2d())
