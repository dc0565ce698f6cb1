"""A reference interpreter for the index notation of ``derivgrad.define``, written apart from
``derivgrad.notation``: it shares no code with it (not its parser, not its range inference,
not its code generator), only the documented semantics:

* ``T[lhs] = E`` evaluates ``E`` at every point of the left indices' ranges; ``T[lhs] += E``
  sums ``E`` over the ranges of the indices on the right and not on the left;
* an index used alone as a subscript runs over that axis, ``[0, n)``; one given in
  ``ranges`` over that range; any other over the largest range keeping every read in bounds
  for all values of the other indices (found here by trying each candidate value, where
  the generator solves the inequalities);
* a defined tensor is stored from 0: entry ``t - lo`` for left index value ``t``; ``L[]`` on
  the left is a scalar (a 0-d array), the sum of the right over all its indices;
* ``T[lhs] max= E`` (``min=``) is the largest (least) ``E`` over the indices on the right and
  not on the left; of equal values the first in row-major order of those indices, taken in
  the order they first appear on the right (left to right), wins (its entry alone gets the
  gradient, which central differences cannot see: the fuzzer's draws have no ties);
* ``(x[...] ?? 0)`` reads ``x`` and is 0 where a subscript is outside ``x``'s shape; such a
  read bounds no index, except that an index no other read bounds, written with a coefficient
  ``c > 0`` in it on an axis of ``n`` entries, runs over ``[0, ceil(n / c))`` ("same");
* a subscript may hold ``e // k``, ``e % k`` (``k > 0``: the quotient rounded down, the
  remainder in ``[0, k)``) and, in a padded read, ``e / k``: the read is 0 where ``k`` does
  not divide ``e``;
* ``len(t)`` is the extent of index ``t``; ``sigmoid(a) = 1 / (1 + e^-a)``; ``max(a, b)``,
  ``min(a, b)`` (the first of equal arguments); ``pow(a, b) = a ** b``.

The statements are read with Python's own :mod:`ast` and evaluated point by point in Python
floats (float64): slow and plain on purpose.
"""

from __future__ import annotations

import ast
import itertools
import math

import numpy as np

FUNCTIONS = {
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "tanh": math.tanh,
    "sigmoid": lambda a: 1.0 / (1.0 + math.exp(-a)),
    "erf": math.erf,
    "abs": abs,
    "sin": math.sin,
    "cos": math.cos,
    "max": max,  # Python's max and min return the first of equal arguments
    "min": min,
    "pow": math.pow,  # a ValueError outside the reals (a < 0, b not an integer)
}


class Statement:
    def __init__(self, line: str):
        line = line.strip()
        self.reduce = "sum"
        for kind in ("max", "min"):
            head, sep, tail = line.partition(f"] {kind}=")
            if sep and "=" not in head:
                self.reduce = kind
                line = f"{head}] +={tail}"
        name, bracket, rest = line.partition("[")
        scalar = bracket and rest.lstrip().startswith("]")  # "L[] += ...": no left index
        if scalar:
            line = name + rest.lstrip()[1:]  # "L += ...", a plain Python assignment
        node = ast.parse(line.replace("??", " or ")).body[0]  # a padded read: BoolOp
        self.accumulate = isinstance(node, ast.AugAssign)
        target = node.target if isinstance(node, ast.AugAssign) else node.targets[0]
        if scalar:
            self.target, self.lhs = target.id, []
        else:
            self.target = target.value.id
            s = target.slice
            self.lhs = [e.id for e in (s.elts if isinstance(s, ast.Tuple) else [s])]
        self.rhs = node.value
        self.reads = []  # (tensor, [subscript nodes])
        self.padded = []  # the same, of the reads written "?? 0"
        inside = {id(b.values[0]) for b in ast.walk(self.rhs) if isinstance(b, ast.BoolOp)}
        for n in ast.walk(self.rhs):
            if isinstance(n, ast.Subscript):
                s = n.slice
                read = (n.value.id, list(s.elts) if isinstance(s, ast.Tuple) else [s])
                (self.padded if id(n) in inside else self.reads).append(read)
        # every index in the order it first appears, left to right (the row-major order of a
        # max= statement's reduced indices)
        found = sorted(
            (n.col_offset, n.id)
            for _, subs in self.reads + self.padded
            for sub in subs
            for n in ast.walk(sub)
            if isinstance(n, ast.Name)
        )
        names: list[str] = []
        for _, name in found:
            if name not in names:
                names.append(name)
        self.indices = names
        self.summed = [t for t in names if t not in self.lhs]


def _int(node: ast.AST, env: dict[str, int]) -> int:
    """An affine subscript's value at integer index values."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        v = _int(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else v
    a, b = _int(node.left, env), _int(node.right, env)
    if isinstance(node.op, (ast.FloorDiv, ast.Mod, ast.Div)):
        # b > 0 (the notation's rule): the quotient rounded down and the remainder in
        # [0, b), found by stepping, apart from any division the generator writes
        q = 0
        while (q + 1) * b <= a:
            q += 1
        while q * b > a:
            q -= 1
        r = a - q * b
        if isinstance(node.op, ast.Div):
            return q if r == 0 else math.nan  # no whole position: a padded read gives 0
        return q if isinstance(node.op, ast.FloorDiv) else r
    return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}[type(node.op)]


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def infer(st: Statement, shapes: dict, fixed: dict) -> dict[str, tuple[int, int]]:
    rng: dict[str, tuple[int, int]] = {t: fixed[t] for t in st.indices if t in fixed}
    for name, subs in st.reads + st.padded:
        for axis, sub in enumerate(subs):
            if isinstance(sub, ast.Name) and sub.id not in rng:
                rng[sub.id] = (0, shapes[name][axis])
    while len(rng) < len(st.indices):
        progress = False
        for t in st.indices:
            if t in rng:
                continue
            checks = [
                (shapes[name][axis], sub)
                for name, subs in st.reads
                for axis, sub in enumerate(subs)
                if t in _names(sub) and _names(sub) - {t} <= set(rng)
            ]
            if not checks:
                continue
            ok = []
            for v in range(-64, 64):
                good = True
                for n, sub in checks:
                    others = sorted(_names(sub) - {t})
                    for combo in itertools.product(*(range(*rng[u]) for u in others)):
                        env = dict(zip(others, combo), **{t: v})
                        if not 0 <= _int(sub, env) < n:
                            good = False
                            break
                    if not good:
                        break
                if good:
                    ok.append(v)
            if len(ok) == 128:  # every probe in bounds: only a remainder holds t
                continue
            assert ok and ok == list(range(ok[0], ok[-1] + 1)), f"no interval for {t}"
            rng[t] = (ok[0], ok[-1] + 1)
            progress = True
        if not progress:  # "same": the first padded read holding an unbounded index
            for name, subs in sorted(st.padded, key=lambda r: r[1][0].col_offset):
                for axis, sub in enumerate(subs):
                    order = sorted(
                        (n for n in ast.walk(sub) if isinstance(n, ast.Name)),
                        key=lambda n: n.col_offset,
                    )
                    for t in [n.id for n in order if n.id not in rng]:
                        env = dict.fromkeys(_names(sub), 0)
                        c = _int(sub, {**env, t: 1}) - _int(sub, env)
                        if c > 0 and not progress:
                            rng[t] = (0, -(-shapes[name][axis] // c))
                            progress = True
        assert progress, "the reference cannot infer every range"
    return rng


# the largest magnitude of any value a run has computed, intermediates included: a program
# whose intermediates pass a dtype's range cannot be compared in that dtype
_PEAK = [0.0]


def _value(node: ast.AST, env: dict, tensors: dict, rng: dict) -> float:
    v = _value_of(node, env, tensors, rng)
    if abs(v) > _PEAK[0]:
        _PEAK[0] = abs(v)
    return v


def _value_of(node: ast.AST, env: dict, tensors: dict, rng: dict) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.BoolOp):  # x[...] ?? 0
        read = node.values[0]
        s = read.slice
        at = tuple(_int(e, env) for e in (s.elts if isinstance(s, ast.Tuple) else [s]))
        shape = tensors[read.value.id].shape
        if all(0 <= a < n for a, n in zip(at, shape)):
            return _value(read, env, tensors, rng)
        return 0.0
    if isinstance(node, ast.Subscript):
        s = node.slice
        subs = list(s.elts) if isinstance(s, ast.Tuple) else [s]
        return float(tensors[node.value.id][tuple(_int(e, env) for e in subs)])
    if isinstance(node, ast.UnaryOp):
        v = _value(node.operand, env, tensors, rng)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Call):
        if node.func.id == "len":
            lo, hi = rng[node.args[0].id]
            return float(hi - lo)
        args = [_value(a, env, tensors, rng) for a in node.args]
        return float(FUNCTIONS[node.func.id](*args))
    a = _value(node.left, env, tensors, rng)
    b = _value(node.right, env, tensors, rng)
    op = type(node.op)
    if op is ast.Add:
        return a + b
    if op is ast.Sub:
        return a - b
    if op is ast.Mult:
        return a * b
    if op is ast.Div:
        return a / b
    return a**b


def run(spec: str, inputs: dict[str, np.ndarray], fixed: dict | None = None) -> dict:
    """Every tensor (inputs and defined ones) after running ``spec`` on ``inputs``."""
    tensors = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    fixed = {t: ((0, r) if isinstance(r, int) else tuple(r)) for t, r in (fixed or {}).items()}
    for line in spec.splitlines():
        if not line.split("#")[0].strip():
            continue
        st = Statement(line.split("#")[0])
        shapes = {k: v.shape for k, v in tensors.items()}
        rng = infer(st, shapes, fixed)
        out = np.zeros([rng[t][1] - rng[t][0] for t in st.lhs])
        for point in itertools.product(*(range(*rng[t]) for t in st.lhs)):
            env = dict(zip(st.lhs, point))
            total = 0.0
            first = True
            for inner in itertools.product(*(range(*rng[t]) for t in st.summed)):
                env.update(zip(st.summed, inner))
                v = _value(st.rhs, env, tensors, rng)
                if st.reduce == "sum":
                    total += v
                elif first or (v > total if st.reduce == "max" else v < total):
                    total = v  # strictly better only: the first of equal values stays
                first = False
            out[tuple(p - rng[t][0] for p, t in zip(point, st.lhs))] = total
        tensors[st.target] = out
    return tensors


def peak(spec: str, inputs: dict[str, np.ndarray], fixed: dict | None = None) -> float:
    """The largest magnitude of any value, intermediate or summed, that running ``spec``
    computes (inf when one overflows)."""
    _PEAK[0] = 0.0
    tensors = run(spec, inputs, fixed)
    return max([_PEAK[0]] + [float(np.max(np.abs(v), initial=0.0)) for v in tensors.values()])


def outputs(spec: str) -> list[str]:
    """The tensors no later statement reads, in order (the last statement's always)."""
    sts = [Statement(ln.split("#")[0]) for ln in spec.splitlines() if ln.split("#")[0].strip()]
    return [
        st.target
        for k, st in enumerate(sts)
        if not any(
            name == st.target for later in sts[k + 1 :] for name, _ in later.reads + later.padded
        )
    ]


def output(spec: str, inputs: dict[str, np.ndarray], fixed: dict | None = None) -> np.ndarray:
    last = [ln for ln in spec.splitlines() if ln.split("#")[0].strip()][-1]
    return run(spec, inputs, fixed)[Statement(last.split("#")[0]).target]


def gradients(
    spec: str,
    inputs: dict[str, np.ndarray],
    dy: np.ndarray,
    fixed: dict | None = None,
    h: float = 1e-6,
    rng: np.random.Generator | None = None,
    directions: int = 3,
    per_entry: int = 12,
) -> list[tuple[str, np.ndarray | None, float, float]]:
    """Central differences of ``L = Σ dy · output`` (``dy`` a dict: ``Σ_o dy[o] · o`` over
    the outputs): ``(input, direction, dL along it)``
    for each entry of a small input (``direction`` None: the entry's one-hot, listed as
    ``(name, index)``), else along ``directions`` random unit directions (as reliable a test
    of a gradient, at two evaluations each)."""

    def loss(x: dict) -> float:
        if isinstance(dy, dict):
            t = run(spec, x, fixed)
            return float(sum(np.sum(dy[o] * t[o]) for o in dy))
        return float(np.sum(dy * output(spec, x, fixed)))

    out = []
    rng = rng or np.random.default_rng(0)
    for name, a in inputs.items():
        if a.size <= per_entry:
            dirs = []
            for i in range(a.size):
                e = np.zeros(a.size)
                e[i] = 1.0
                dirs.append(e.reshape(a.shape))
        else:
            dirs = [rng.standard_normal(a.shape) for _ in range(directions)]
            dirs = [v / np.linalg.norm(v) for v in dirs]
        for v in dirs:
            up = dict(inputs, **{name: a + h * v})
            dn = dict(inputs, **{name: a - h * v})
            out.append((name, v, (loss(up) - loss(dn)) / (2 * h)))
    return out
