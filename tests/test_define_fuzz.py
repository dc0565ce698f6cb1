"""A differential fuzzer for ``derivgrad.define``: hypothesis draws index-notation programs and
the generated kernels' forward and backward, float64 and float32, are held to the reference
interpreter of ``tests/notation_reference.py`` (written apart from the code generator) and to
central differences of it.

The programs: 1-4 statements, ``=``, ``+=``, ``max=`` and ``min=``, some with a side output (a
statement no later one reads: ``forward`` returns a dict), then maybe a scalar loss
(``L[] += ...``, ``max=``, ``min=``): elementwise maps, sums (maxima, minima) over an axis,
matrix products (the GEMM path; max-plus and min-plus products), windows with strides,
dilations, offsets and causal shifts (``x[i - u]``), zero-padded (``(x[2*i + u - 2] ?? 0)``,
"same" ranges) or not, with weights or with a fixed window
(``ranges=``); resampling by integer division and remainder (``x[(i + 1) // 2] * w[i % 2]``)
and transposed windows of exact division (``(x[(i - u) / 2] ?? 0)``); every function of the
notation (``log`` and ``sqrt`` of positive arguments,
``exp`` of a read, ``pow`` of a positive base), ``len``; tensor and index names drawn from a
pool of names the generated code, SymPy or Python use themselves; shapes 1-6 per axis.

Every distinct program compiles its kernels (10-20 s for four statements, both dtypes), so
the generated module runs two ways: as Python (Numba's ``DISABLE_JIT`` at import: the same
source, every name and bound as generated, no compile) for ``PYTHON_EXAMPLES`` programs, and
compiled for ``COMPILED_EXAMPLES`` (what typing and LLVM add: dtypes, fastmath, the phases'
error model).  ``DERIVGRAD_PROFILE=thorough`` runs many more of both.
"""

from __future__ import annotations

import os
import types
from typing import Any

import notation_reference as ref
import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import derivgrad
from derivgrad.notation.op import DefinedOp

# names the code generator, SymPy, NumPy, Numba or Python use for themselves, and define()'s
# and forward()'s own parameters (``spec``, ``self``, ``dy``): each must work as a user name
POOL = (
    "x w i j u r_0 r_1 r_2 lo0_i hi0_i lo1_j d_x d_y d_r_0 T_x v_i f_i e1_i _z _q acc R np "
    "math numba prange nthreads sum len max exp float range ph0_0 _n1X _A1 spec self dy E I S "
    "N pi run_parallel forward backward _tid"
).split()

THOROUGH = os.environ.get("DERIVGRAD_PROFILE") == "thorough"
PYTHON_EXAMPLES = 1000 if THOROUGH else 40
COMPILED_EXAMPLES = 100 if THOROUGH else 2

UNARY = (
    "-{a}",
    "tanh({a})",
    "sigmoid({a})",
    "erf({a})",
    "abs({a})",
    "log({a} * {a} + 1)",
    "sqrt({a} * {a} + 0.5)",
    "({a}) ** 2",
    "({a}) ** 3",
    "{a} * 0.5",
    "sin({a})",
    "cos({a})",
)
BINARY = (
    "({a} + {b})",
    "({a} - {b})",
    "{a} * {b}",
    "{a} / ({b} * {b} + 1)",
    "max({a}, {b})",
    "min({a}, {b})",
    "pow({a} * {a} + 1, {b})",  # a real exponent of a positive base
)


@st.composite
def _expression(
    draw: st.DrawFn, required: list[str], extra: list[str], idx: list[str], inputs: set
) -> str:
    """An expression holding every read of ``required`` (so every index is on the right)."""

    def wrap(a: str, depth: int) -> str:
        for _ in range(depth):
            kind = draw(st.integers(0, 3))
            if kind == 0 and "(" not in a and a.split("[")[0] in inputs:
                a = f"exp({a})"  # of an input's read only: in [-1, 1], so never overflowing
            elif kind == 1:
                a = draw(st.sampled_from(UNARY)).format(a=a)
            elif kind == 2:
                b = draw(
                    st.sampled_from([*extra, "2", "0.5", f"len({draw(st.sampled_from(idx))})"])
                )
                a = draw(st.sampled_from(BINARY)).format(a=a, b=b)
        return a

    parts = [wrap(r, draw(st.integers(0, 2))) for r in required]
    e = parts[0]
    for p in parts[1:]:
        e = draw(st.sampled_from(BINARY)).format(a=e, b=p)
    return wrap(e, draw(st.integers(0, 1)))


@st.composite
def programs(draw: st.DrawFn) -> tuple[str, dict, dict]:
    """``(spec, input shapes, fixed ranges)``."""
    names = iter(draw(st.permutations(POOL)))
    shapes: dict[str, tuple[int, ...]] = {}
    known: dict[str, tuple[int, ...]] = {}
    fixed: dict[str, int] = {}
    lines: list[str] = []

    def new_input(shape: tuple[int, ...]) -> str:
        n = next(names)
        shapes[n] = known[n] = shape
        return n

    def dims(k: int) -> tuple[int, ...]:
        return tuple(draw(st.integers(1, 6)) for _ in range(k))

    def index_names(k: int, r: int) -> list[str]:
        idx = [next(names) for _ in range(r)]
        # the names the derivation gives this statement's range bounds (lo{k}_t, hi{k}_t):
        # an index named so must stay apart from the bound of t
        if r >= 2 and draw(st.booleans()):
            twin = f"{draw(st.sampled_from(['lo', 'hi']))}{k}_{idx[0]}"
            if twin not in POOL:
                idx[-1] = twin
        return idx

    src = new_input(dims(draw(st.integers(1, 3))))
    for k in range(draw(st.integers(1, 4))):
        # what a statement that reduces does over its right-only indices
        acc = draw(st.sampled_from(["+=", "+=", "max=", "min="]))
        shape = known[src]
        r = len(shape)
        idx = index_names(k, r)
        read = f"{src}[{', '.join(idx)}]"
        kind = draw(st.sampled_from(["map", "sum", "matmul", "window", "divide"]))
        target = next(names)
        if kind == "map":
            required = [read]
            if draw(st.booleans()):  # a second input on some of the axes (a bias, a scale)
                axes = sorted(draw(st.sets(st.integers(0, r - 1), min_size=1)))
                b = new_input(tuple(shape[a] for a in axes))
                required.append(f"{b}[{', '.join(idx[a] for a in axes)}]")
            lhs, op = idx, "="
        elif kind == "sum" and r >= 2:
            a = draw(st.integers(0, r - 1))
            required = [read]
            if draw(st.booleans()):
                required.append(f"{new_input((shape[a],))}[{idx[a]}]")
            lhs, op = [t for q, t in enumerate(idx) if q != a], acc
        elif kind == "matmul":
            a = draw(st.integers(0, r - 1))
            o = next(names)
            w = new_input((shape[a], draw(st.integers(1, 6))))
            required = [read, f"{w}[{idx[a]}, {o}]"]
            lhs, op = [t for q, t in enumerate(idx) if q != a] + [o], acc
        elif kind == "divide":  # resampling along axis a by a factor f
            a = draw(st.integers(0, r - 1))
            f = draw(st.integers(2, 3))
            i = idx[a]
            form = draw(st.sampled_from(["up", "shuffle", "transposed"]))
            if form == "shuffle" and r >= 2:
                # a pixel shuffle along two axes: entry f*c + (i % f) of axis b goes to i of
                # axis a (the adjoint gathers only the remainders its entry holds)
                b = draw(st.sampled_from([q for q in range(r) if q != a]))
                subs = list(idx)
                subs[a] = f"{i} // {f}"
                subs[b] = f"{f}*{idx[b]} + {i} % {f}"
                required = [f"{src}[{', '.join(subs)}]"]
                lhs, op = idx, "="
            elif form != "transposed":
                # nearest upsampling, shifted by c (its range inferred through the division),
                # maybe scaled by a weight of the position within each block (i % f)
                c = draw(st.integers(0, f - 1))
                sub = f"({i} + {c}) // {f}" if c else f"{i} // {f}"
                required = [f"{src}[{', '.join(sub if q == a else t for q, t in enumerate(idx))}]"]
                if draw(st.booleans()):
                    required.append(f"{new_input((f,))}[{i} % {f}]")
                lhs, op = idx, "="
            else:
                # a transposed window of stride f: the read is 0 where f does not divide i - u
                K = draw(st.integers(1, 3))
                u = next(names)
                sub = f"({i} - {u}) / {f}"
                win = f"{src}[{', '.join(sub if q == a else t for q, t in enumerate(idx))}]"
                required = [f"({win} ?? 0)"]
                if draw(st.booleans()):
                    required.append(f"{new_input((K,))}[{u}]")
                else:
                    fixed[u] = K
                fixed[i] = (shape[a] - 1) * f + K
                lhs, op = idx, acc
        else:  # a window along axis a: stride s, dilation d, offset c, or causal
            a = draw(st.integers(0, r - 1))
            n = shape[a]
            d = draw(st.integers(1, 2))
            K = draw(st.integers(1, max(1, min(3, (n - 1) // d + 1))))
            s = draw(st.integers(1, 2))
            u = next(names)
            causal = draw(st.booleans())
            pad = draw(st.booleans())  # zero padding: the read may fall outside, as 0
            c = 0 if causal else draw(st.integers(-2 if pad else -1, 2))
            i = idx[a]
            sub = f"{i} - {d}*{u}" if causal else f"{s}*{i} + {d}*{u}" + (f" + {c}" if c else "")
            wread = []
            if draw(st.booleans()):
                wread = [f"{new_input((K,))}[{u}]"]
            else:
                fixed[u] = K
            win = f"{src}[{', '.join(sub if q == a else t for q, t in enumerate(idx))}]"
            if pad:
                win = f"({win} ?? 0)"
            required = [win, *wread]
            lhs, op = idx, acc
        idx_all = [t for t in idx if any(t in q for q in required)]
        e = draw(_expression(required, [read] if op == "=" else [], idx_all or idx, set(shapes)))
        line = f"{target}[{', '.join(lhs)}] {op} {e}"
        stmt = ref.Statement(line)
        try:
            rng = ref.infer(stmt, known, {t: (0, k) for t, k in fixed.items()})
        except AssertionError:
            assume(False)
        assume(all(hi > lo for lo, hi in rng.values()))
        known[target] = tuple(rng[t][1] - rng[t][0] for t in stmt.lhs)
        lines.append(line)
        if k < 2 and draw(st.integers(0, 4)) == 0:  # (k < 2: the pool of names suffices)
            # a side output: a map of this tensor that no later statement reads
            side = [next(names) for _ in known[target]]
            e = draw(_expression([f"{target}[{', '.join(side)}]"], [], side, set(shapes)))
            lines.append(f"{next(names)}[{', '.join(side)}] = {e}")
        src = target
    if draw(st.booleans()):  # a scalar loss of the last tensor: "L[] += ..." sums every index
        idx = [next(names) for _ in known[src]]
        read = f"{src}[{', '.join(idx)}]"
        e = draw(_expression([read], [], idx, set(shapes)))
        # (or its largest or least entry: a reduction over two or three indices at once)
        op = draw(st.sampled_from(["+=", "+=", "max=", "min="]))
        lines.append(f"{next(names)}[] {op} {e}")
    return "\n".join(lines), shapes, fixed


def _values(shapes: dict, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-1, 1, v) for k, v in shapes.items()}


def _close(got: np.ndarray, want: np.ndarray, rtol: float, what: str, spec: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}\n{spec}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    err = float(np.abs(got - want).max(initial=0.0))
    assert err <= rtol * scale, f"{what}: error {err:.3g} > {rtol:g} * {scale:.3g}\n{spec}"


def python_kernels(op: DefinedOp) -> types.ModuleType:
    """The op's generated module, imported with Numba's JIT off: plain Python functions."""
    mod = types.ModuleType(f"derivgrad_define_python_{op.key}")
    old = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True  # read by numba.njit when it decorates
    try:
        exec(compile(op.source(), f"<{op.name} as Python>", "exec"), mod.__dict__)
    finally:
        numba.config.DISABLE_JIT = old
    return mod


def check_against_reference(program: tuple, seed: int, compiled: bool) -> None:
    spec, shapes, fixed = program
    try:
        op = DefinedOp(spec, shapes, ranges=fixed)
    except derivgrad.notation.DefineError as e:
        # pow() of a variable exponent counts as an exponential: the strategy can nest three
        assume("nested more than" not in str(e))
        raise
    if not compiled:
        op._module = python_kernels(op)
    x = _values(shapes, seed)
    outs = ref.outputs(spec)
    tensors = ref.run(spec, x, fixed)
    y: Any = tensors[outs[0]] if len(outs) == 1 else {o: tensors[o] for o in outs}
    up = np.random.default_rng(seed + 1)
    dy: Any = (
        up.uniform(-1, 1, y.shape)
        if len(outs) == 1
        else {o: up.uniform(-1, 1, tensors[o].shape) for o in outs}
    )
    cds = ref.gradients(spec, x, dy, fixed, rng=np.random.default_rng(seed + 2))
    scale = max([1.0] + [abs(v) for _, _, v in cds])
    largest = max(ref.peak(spec, x, fixed), scale)
    for dtype, rtol, gtol in ((np.float64, 1e-9, 1e-5), (np.float32, 2e-3, 5e-3)):
        if largest > float(np.finfo(dtype).max) / 1e3:
            # the true values, or an intermediate on the way to them, do not fit this dtype
            # (pow of pow: float32 overflows to inf): nothing to compare in it
            continue
        xs = {k: v.astype(dtype) for k, v in x.items()}
        got = op.forward(**xs)
        if len(outs) == 1:
            _close(got, y, rtol, f"forward {np.dtype(dtype)}", spec)
            g = op.backward(dy.astype(dtype), **xs)
        else:
            assert isinstance(got, dict) and list(got) == outs, f"outputs {list(got)}\n{spec}"
            for o in outs:
                _close(got[o], y[o], rtol, f"forward {np.dtype(dtype)} of {o}", spec)
            g = op.backward({o: v.astype(dtype) for o, v in dy.items()}, **xs)
        for name, v, want in cds:
            got = float(np.sum(g[name].astype(np.float64) * v))
            assert abs(got - want) <= gtol * scale, (
                f"backward {np.dtype(dtype)}: dL/d{name} along a direction: {got!r} != "
                f"central differences {want!r}\n{spec}"
            )


FUZZ = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


@settings(max_examples=PYTHON_EXAMPLES, **FUZZ)
@given(program=programs(), seed=st.integers(0, 2**16))
def test_generated_source_agrees_with_the_reference(program: tuple, seed: int) -> None:
    check_against_reference(program, seed, compiled=False)


@settings(max_examples=COMPILED_EXAMPLES, **FUZZ)
@given(program=programs(), seed=st.integers(0, 2**16))
def test_compiled_kernels_agree_with_the_reference(program: tuple, seed: int) -> None:
    check_against_reference(program, seed, compiled=True)


@pytest.mark.parametrize(
    "spec, shapes, values, want",
    [
        ("y[r_0] = x[r_0] * 2", {"x": (5,)}, {"x": np.arange(5.0)}, [0, 2, 4, 6, 8]),
        (
            "y[lo0_i] += x[lo0_i + hi0_i] * w[hi0_i]",
            {"x": (4,), "w": (2,)},
            {"x": np.arange(4.0) ** 2, "w": np.array([1.0, -1.0])},
            [-1, -3, -5],
        ),
        (
            "d_y[d_x_] = d_x[d_x_] + r_0[d_x_]",
            {"d_x": (3,), "r_0": (3,)},
            {"d_x": np.zeros(3), "r_0": np.ones(3)},
            [1, 1, 1],
        ),
    ],
)
def test_the_issue_reproductions_of_name_collisions(spec, shapes, values, want):
    op = derivgrad.define(spec, **shapes)
    assert op.forward(**values).tolist() == want
    assert ref.output(spec, values).tolist() == want


def test_an_index_that_looks_like_a_range_runs_past_the_example_shape():
    # r_1 was the generated code's upper bound of the first index: a read past the end, and
    # a segfault on a large input; the kernels promise any size that fits the definition
    op = derivgrad.define("y[r_1, j] = x[r_1, j] * 2", x=(1, 4))
    x = np.ones((1, 1 << 24))
    y = op.forward(x=x)
    assert y.shape == x.shape and float(y.min()) == float(y.max()) == 2.0


def test_names_define_needs_are_refused_in_one_line():
    for name in ("name", "title", "ranges"):
        with pytest.raises(derivgrad.notation.DefineError, match=f"rename the tensor.*{name}_"):
            derivgrad.define(f"y[i] = {name}[i] * 2", **{name: (3,)})
    # spec, self and dy are positional-only parameters: free for tensors
    op = derivgrad.define("y[i] = spec[i] * self[i] + dy[i]", spec=(2,), self=(2,), dy=(2,))
    g = op.backward(np.ones(2), spec=np.ones(2), self=np.full(2, 3.0), dy=np.zeros(2))
    assert g["spec"].tolist() == [3.0, 3.0] and g["dy"].tolist() == [1.0, 1.0]
