r"""A parsed definition as a program: names checked, index ranges inferred, gradients derived.

**Ranges.**  Every statement has its own indices.  An index used alone as a subscript takes
that axis's extent, ``[0, n)`` (every such use must agree).  An index that appears only inside
affine subscripts takes the largest range keeping every read in bounds: from
``0 <= a·t + rest <= n - 1`` for all values of the other indices,

.. math:: t \ge \lceil -\min(\mathrm{rest}) / a \rceil, \qquad
          t \le \lfloor (n - 1 - \max(\mathrm{rest})) / a \rfloor \quad (a > 0)

(a "valid" convolution; ``x[i - u]`` starts ``i`` at ``K - 1``: a causal convolution whose
output entry ``i - (K-1)`` is the one ending at ``x[i]``).  A tensor defined on the left is
stored from 0: entry ``t - lo_t``.  A read that can fall outside its tensor is an error
naming the statement, never a silent zero, unless it is written ``(x[...] ?? 0)``: such a
read is 0 outside ``x`` (zero padding) and bounds no index; an index that no other read
bounds and that such a read holds with a coefficient ``c > 0`` on an axis of ``n`` entries
runs over ``[0, ceil(n / c))``, the input's size over the stride ("same" padding).  An index
inside a division ``c·(g // k)`` of an unpadded read is bounded through it
(``F <= g // k <= G`` is ``k·F <= g <= k·G + k - 1``, :func:`_bound`); a remainder bounds no
index (it stays in ``[0, k)``), and spans ``[0, k - 1]`` in the bounds check.

The same inference runs on integers (the example shapes, and every call of the generated
kernels, where it validates the arrays' shapes) and on SymPy symbols (the general-size rules).

**Gradients.**  Reverse mode over the statements, written in *gather* form: the adjoint of
a tensor ``R`` read as ``R[a(t)]`` by statement ``T[lhs] (+)= E`` receives

.. math:: \bar R[p] \mathrel{+}= \sum_{t:\ a(t) = p} \bar T[\mathrm{lhs}(t)]\,
          \frac{\partial E}{\partial R[a(t)]}(t)

and the equations ``a_j(t) = p_j`` are solved for an index of coefficient ±1 each (SymPy does
the algebra), leaving the other indices as sums bounded by the solved indices' ranges
(``[0 <= p - 2i <= K - 1]``).  A division atom ``g // k`` (``g % k``) of the read is a new
index ``q`` (``r``) with the equation ``g = k·q + r`` and ``0 <= r < k`` (an exact ``g / k``:
``g = k·q``), solved with the others: ``dx[p]`` of ``y[i] = x[i // 2]`` is ``Σ_{r<2} dy[2p +
r]``, the points that read ``x[p]`` and no others (``_Aux``).  Another read's atoms stay in its
subscripts (``floor``, :class:`Rem`, :class:`ExactDiv`, whose read is tested ``g % k == 0``).
Each adjoint entry is owned by one output point, so the
generated kernels run parallel without races; ``∂E/∂R`` is SymPy's ``diff``.  A ``max=``
(``min=``) statement ``T[lhs] max= E`` has the same terms, each multiplied by the indicator
that the summed indices' values at ``t`` are the first arg-max of ``E`` over them at
``lhs(t)`` (:attr:`Term.selects`): the derivative of ``WindowMax`` over the row, as the chain
rule gives it, with the built-in max pooling's tie rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sympy as sp

from ..symbolic.functions import WindowMax
from .parse import SCALAR_INDEX, Affine, DefineError, Div, Statement, divisions

Number = Any  # int (concrete shapes) or a SymPy expression (general sizes)


RESERVED_TENSOR = "upstream"  # the key of δ in values= and a derivation's JSON


def _is_int(*v: Any) -> bool:
    return all(isinstance(a, int) for a in v)


def _fdiv(a: Number, b: int) -> Number:
    return a // b if _is_int(a) else sp.floor(a / b)


def _cdiv(a: Number, b: int) -> Number:
    return -((-a) // b) if _is_int(a) else sp.ceiling(a / b)


def _max(a: Number, b: Number) -> Number:
    return max(a, b) if _is_int(a, b) else sp.Max(a, b)


def _min(a: Number, b: Number) -> Number:
    return min(a, b) if _is_int(a, b) else sp.Min(a, b)


@dataclass
class Ranges:
    """Per statement ``{index: (lo, hi)}`` (``hi`` exclusive) and every tensor's shape."""

    index: list[dict[str, tuple[Number, Number]]]
    shapes: dict[str, tuple[Number, ...]]
    bare: list[set[str]]  # indices whose range comes from a bare read: always [0, n)
    equal: list[tuple[Any, Any]] = field(default_factory=list)  # symbolic: sizes found equal


class Program:
    """The checked statements of a definition with the ranks of its tensors.

    ``inputs``: the tensors read and never defined, in order of first read; ``defined``: the
    tensors defined, in order; ``outputs``: those no later statement reads (the last one
    always; several outputs are returned together); ``output``: the last one.
    """

    def __init__(self, statements: list[Statement], ranks: dict[str, int]):
        self.statements = statements
        self.inputs: list[str] = []
        self.defined: list[str] = []
        self.ranks: dict[str, int] = {}
        self.stmt_of: dict[str, int] = {}
        indices = {t for st in statements for t in st.indices}
        for k, st in enumerate(statements):
            for name, _, col in [(st.target, (), 0), *st.refs]:
                if name == RESERVED_TENSOR:
                    raise st.error(
                        col,
                        f"{name!r} is derivgrad's name for the upstream gradient dL/dy (values "
                        f"and documents use it): call the tensor something else, e.g. {name}_in",
                    )
            if st.target in indices:
                raise st.error(0, f"{st.target!r} is both an index and a tensor: rename one")
            if st.target in self.ranks or st.target in ranks:
                what = "an input" if st.target in ranks else "defined above"
                raise st.error(0, f"{st.target!r} is {what}: a name is defined once")
            for name, subs, col in st.refs:
                if name in indices:
                    raise st.error(col, f"{name!r} is both an index and a tensor: rename one")
                if name in self.ranks:
                    if len(subs) != self.ranks[name]:
                        raise st.error(
                            col,
                            f"{name} is read with {len(subs)} subscript(s) but has "
                            f"{_axes(self.ranks[name])}",
                        )
                    continue
                if name == st.target or name in {s.target for s in statements[k + 1 :]}:
                    raise st.error(col, f"{name} is read before it is defined")
                if name not in ranks:
                    raise st.error(
                        col, f"unknown tensor {name!r}: give its shape, as in {name}=(2, 3)"
                    )
                if len(subs) != ranks[name]:
                    raise st.error(
                        col,
                        f"{name} is read with {len(subs)} subscript(s) but its shape has "
                        f"{_axes(ranks[name])}",
                    )
                self.ranks[name] = ranks[name]
                self.inputs.append(name)
            self.ranks[st.target] = len(st.lhs)
            self.stmt_of[st.target] = k
            self.defined.append(st.target)
            if not st.lhs:
                raise st.error(0, "the left side needs at least one index, as in y[i]")
        unused = [k for k in ranks if k not in self.ranks]
        if unused:
            raise DefineError(
                f"define: a shape was given for {', '.join(unused)}, which the definition "
                "never reads"
            )
        self.output = statements[-1].target
        read_later: set[str] = set()
        outputs = []
        for st in reversed(statements):
            if st.target not in read_later:
                outputs.append(st.target)
            read_later |= {name for name, _, _ in st.refs}
        self.outputs = outputs[::-1]

    # -- ranges -----------------------------------------------------------------------------
    def infer(
        self,
        shapes: dict[str, tuple[Number, ...]],
        check: bool = True,
        fixed: dict[str, tuple[int, int]] | None = None,
    ) -> Ranges:
        """Index ranges for input ``shapes`` (ints, or SymPy symbols for general sizes).

        With ints (``check``) an inconsistent shape, an empty range or a read out of bounds is
        a :class:`DefineError` naming the statement."""
        shapes = dict(shapes)
        out = Ranges([], shapes, [])
        for st in self.statements:
            rng: dict[str, tuple[Number, Number]] = {}
            src: dict[str, str] = {}
            bare: set[str] = set()
            for t, r in (fixed or {}).items():
                if t in st.indices:
                    rng[t], src[t] = r, f"the range {t}={r} given to define"
            if st.scalar:
                rng[SCALAR_INDEX], src[SCALAR_INDEX] = (0, 1), "a scalar output"
            for name, subs, col in st.refs:
                for axis, a in enumerate(subs):
                    b = a.bare()
                    if b is None:
                        continue
                    t = b
                    n = shapes[name][axis]
                    if t not in rng:
                        rng[t], src[t] = (0, n), f"axis {axis} of {name} ({n})"
                        bare.add(t)
                    elif rng[t][1] != n or rng[t][0] != 0:
                        if _is_int(n, rng[t][1]):
                            raise st.error(
                                col,
                                f"index {t!r} runs over {src[t]} and axis {axis} of {name} "
                                f"({n}): the sizes must agree",
                            )
                        out.equal.append((rng[t][1], n))
            # indices read only inside affine subscripts: the largest in-bounds range
            todo = [t for t in st.indices if t not in rng]
            while todo:
                progress = False
                for t in list(todo):
                    lo: Number = None
                    hi: Number = None
                    for q, (name, subs, _) in enumerate(st.refs):
                        if q in st.padded:  # may read outside: bounds nothing here
                            continue
                        for axis, a in enumerate(subs):
                            if t not in a.indices():
                                continue
                            if any(u not in rng for u in a.indices() if u != t):
                                continue
                            found = _bound(a, t, rng, 0, shapes[name][axis] - 1)
                            if found is None:
                                continue
                            lo_c, hi_c = found
                            lo = lo_c if lo is None else _max(lo, lo_c)
                            hi = hi_c if hi is None else _min(hi, hi_c)
                    if lo is not None:
                        rng[t] = (lo, hi + 1)
                        todo.remove(t)
                        progress = True
                if not progress:
                    progress = _same(st, todo, rng, shapes)
                if not progress:
                    col = st.code.find(todo[0], st.code.find("="))
                    held = _held(st, todo[0])
                    if held:
                        raise st.error(
                            max(col, 0),
                            f"cannot infer the range of index {todo[0]!r}: it is read only "
                            f"inside {held}, which bounds no range; give it, as in "
                            f"ranges={{{todo[0]!r}: 8}}",
                        )
                    raise st.error(
                        max(col, 0),
                        f"cannot infer the range of index {todo[0]!r}: it is read only "
                        "together with other indices of unknown range",
                    )
            if check:
                for t in st.indices:
                    lo, hi = rng[t]
                    if _is_int(lo, hi) and hi <= lo:
                        raise st.error(
                            max(st.code.find(t), 0),
                            f"index {t!r} has an empty range [{lo}, {hi}): the input shapes "
                            f"{_fmt_shapes(shapes, st)} are too small for this statement",
                        )
                for q, (name, subs, col) in enumerate(st.refs):
                    if q in st.padded:
                        continue
                    for axis, a in enumerate(subs):
                        lo, hi = _span(a, rng)
                        n = shapes[name][axis]
                        if _is_int(lo, hi, n) and (lo < 0 or hi > n - 1):
                            raise st.error(
                                col,
                                f"{name}[...] axis {axis} subscript {a.text()} reads "
                                f"[{lo}, {hi}] outside [0, {n - 1}] (zero padding: "
                                f"({name}[...] ?? 0))",
                            )
            out.index.append(rng)
            out.bare.append(bare)
            shapes[st.target] = tuple(rng[t][1] - rng[t][0] for t in st.lhs)
        out.shapes = shapes
        return out


def _same(
    st: Statement, todo: list[str], rng: dict[str, tuple[Number, Number]], shapes: dict
) -> bool:
    """An index no unpadded read bounds, read with coefficient ``c > 0`` in a padded read's
    subscript on an axis of ``n`` entries, runs over ``[0, ceil(n / c))``: the output keeps
    the input's size, divided by the stride ("same" padding, as TensorFlow's ``SAME``); the
    first such read decides.  Whether the index was resolved."""
    for r in sorted(st.padded):
        name, subs, _ = st.refs[r]
        for axis, a in enumerate(subs):
            for t, c in a.coef:
                if t in todo and c > 0:
                    rng[t] = (0, _cdiv(shapes[name][axis], c))
                    todo.remove(t)
                    return True
    return False


def _axes(r: int) -> str:
    return f"{r} axis" if r == 1 else f"{r} axes"


def _span(
    a: Affine, rng: dict[str, tuple[Number, Number]], skip: str = "", skip_atom: Any = None
) -> tuple:
    """The least and largest value of subscript ``a`` (``skip``, ``skip_atom``: a term left
    out); a division atom spans the floor of its inner span, a remainder ``[0, k - 1]`` (or
    less, on integers, where the inner span does not wrap)."""
    lo: Number = a.const
    hi: Number = a.const
    spans = [(rng[u], c) for u, c in a.coef if u != skip]
    for d, c in a.atoms:
        if d is skip_atom:
            continue
        glo, ghi = _span(d.inner, rng)
        if d.kind == "%":
            if _is_int(glo, ghi) and ghi - glo + 1 < d.k and glo // d.k == ghi // d.k:
                spans.append(((glo % d.k, ghi % d.k + 1), c))
            else:
                spans.append(((0, d.k), c))
        elif d.kind == "/":
            spans.append(((_cdiv(glo, d.k), _fdiv(ghi, d.k) + 1), c))
        else:
            spans.append(((_fdiv(glo, d.k), _fdiv(ghi, d.k) + 1), c))
    for (ulo, uhi), c in spans:
        if c > 0:
            lo, hi = lo + c * ulo, hi + c * (uhi - 1)
        else:
            lo, hi = lo + c * (uhi - 1), hi + c * ulo
    return lo, hi


def _bound(
    a: Affine, t: str, rng: dict[str, tuple[Number, Number]], L: Number, U: Number
) -> tuple[Number, Number] | None:
    """The range ``[lo, hi]`` of index ``t`` keeping ``L <= a <= U`` for every value of the
    other indices (all of known range), or ``None`` where this subscript bounds no range of
    ``t``: ``t`` inside a remainder (which stays in ``[0, k - 1]`` whatever ``t`` is), or in
    more than one term.  ``t`` in ``c·(g // k)``: the bounds of ``g // k`` first, then of ``t``
    in ``g`` (``F <= g // k <= G`` is ``k·F <= g <= k·G + k - 1``)."""
    c = dict(a.coef).get(t, 0)
    holding = [(d, cd) for d, cd in a.atoms if t in d.inner.indices()]
    if c and not holding:
        rmin, rmax = _span(a, rng, skip=t)
        if c > 0:
            return _cdiv(L - rmin, c), _fdiv(U - rmax, c)
        return _cdiv(rmax - U, -c), _fdiv(rmin - L, -c)
    if c or len(holding) != 1 or holding[0][0].kind != "//":
        return None
    d, cd = holding[0]
    rmin, rmax = _span(a, rng, skip_atom=d)
    if cd > 0:
        flo, fhi = _cdiv(L - rmin, cd), _fdiv(U - rmax, cd)
    else:
        flo, fhi = _cdiv(rmax - U, -cd), _fdiv(rmin - L, -cd)
    return _bound(d.inner, t, rng, d.k * flo, d.k * fhi + d.k - 1)


def _held(st: Statement, t: str) -> str:
    """The text of a remainder or division that holds index ``t`` (for an error), or ""."""
    for _, subs, _ in st.refs:
        for a in subs:
            for d, _ in a.atoms:
                if t in d.inner.indices():
                    return repr(d.text())
    return ""


def _fmt_shapes(shapes: dict, st: Statement) -> str:
    names = dict.fromkeys(n for n, _, _ in st.refs)
    return ", ".join(f"{n}={tuple(shapes[n])}" for n in names)


# -- symbolic pieces shared by the derivation, the kernels and the documents ------------------
# The symbols the derivation makes for itself are of their own classes: SymPy compares symbols
# by class as well as by name and assumptions, so an index a user names ``lo0_i`` or ``ph0_0``
# is never the bound or the placeholder of that name (a list of forbidden names would have to
# be kept in step with every name generated here).
class Bound(sp.Symbol):
    """The low or high end of an index's range (``lo{k}_t``, ``hi{k}_t``)."""


class Placeholder(sp.Symbol):
    """One distinct tensor read of a statement's right side (``ph{k}_{n}``)."""


def lo_sym(k: int, t: str) -> sp.Symbol:
    return Bound(f"lo{k}_{t}", integer=True)


def hi_sym(k: int, t: str) -> sp.Symbol:
    return Bound(f"hi{k}_{t}", integer=True)


def _sigmoid(a: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-a))


SYMPY_FUNCTIONS = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "tanh": sp.tanh,
    "sigmoid": _sigmoid,
    "erf": sp.erf,
    "abs": sp.Abs,
    "sin": sp.sin,
    "cos": sp.cos,
    "max": lambda a, b: WindowMax(a, b),
    # min(a, b) = -max(-a, -b): ties go to the first argument, as max's do, and its gradient
    # (the max's first-maximum indicator) is the one already proved and printed for max
    "min": lambda a, b: -WindowMax(-a, -b),
}


@dataclass
class Local:
    """A statement's right side as SymPy over placeholders, one per distinct read."""

    expr: sp.Expr
    reads: list[tuple[sp.Symbol, str, tuple[Affine, ...]]]  # placeholder, tensor, subscripts
    # the placeholders of padded reads (``x[...] ?? 0``): per axis, whether the subscript can
    # fall outside the tensor (anything but a bare index) and so is guarded
    padded: dict[sp.Symbol, tuple[bool, ...]] = field(default_factory=dict)


def local(k: int, st: Statement) -> Local:
    reads: dict[tuple[str, tuple[Affine, ...], bool], sp.Symbol] = {}

    def go(e: tuple) -> sp.Expr:
        kind = e[0]
        if kind == "num":
            v = e[1]
            return sp.Integer(int(v)) if float(v).is_integer() else sp.Rational(repr(v))
        if kind in ("ref", "pad"):
            key = (e[1], e[2], kind == "pad")
            if key not in reads:
                reads[key] = Placeholder(f"ph{k}_{len(reads)}", real=True)
            return reads[key]
        if kind == "len":
            return hi_sym(k, e[1]) - lo_sym(k, e[1])
        if kind == "neg":
            return -go(e[1])
        if kind == "call":
            return SYMPY_FUNCTIONS[e[1]](*[go(a) for a in e[2]])
        a, b = go(e[1]), go(e[2])
        return {
            "add": lambda: a + b,
            "sub": lambda: a - b,
            "mul": lambda: a * b,
            "div": lambda: a / b,
            "pow": lambda: a**b,
        }[kind]()

    expr = go(st.rhs)
    padded = {
        s: tuple(a.bare() is None for a in subs) for (_, subs, pad), s in reads.items() if pad
    }
    return Local(expr, [(s, name, subs) for (name, subs, _), s in reads.items()], padded)


def idx_sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True)


class ExactDiv(sp.Function):
    """``ExactDiv(g, k)``: ``g / k`` for a ``g`` that ``k`` divides (the subscript ``g / k`` of
    a padded read, which is 0 elsewhere: the reads test ``g % k == 0``, :func:`exact_tests`)."""

    @classmethod
    def eval(cls, g: sp.Expr, k: sp.Expr) -> sp.Expr | None:
        if g.is_Integer and int(g) % int(k) == 0:
            return sp.Integer(int(g) // int(k))
        return None

    def _latex(self, printer: Any) -> str:
        g, k = self.args
        return r"\frac{%s}{%s}" % (printer._print(g), printer._print(k))


class Rem(sp.Function):
    """``Rem(g, k)``: the remainder of ``g`` by ``k > 0`` in ``[0, k)`` (``g % k``); printed
    ``(g mod k)`` in every document format (SymPy's ``Mod`` prints ``\bmod``, which not every
    format reads)."""

    @classmethod
    def eval(cls, g: sp.Expr, k: sp.Expr) -> sp.Expr | None:
        if g.is_Integer:
            return sp.Integer(int(g) % int(k))
        return None

    def _latex(self, printer: Any) -> str:
        g, k = self.args
        return r"\left(%s \operatorname{mod} %s\right)" % (printer._print(g), printer._print(k))


def atom_expr(d: Div, names: dict[str, sp.Symbol]) -> sp.Expr:
    g = affine_expr(d.inner, names)
    if d.kind == "%":
        return Rem(g, sp.Integer(d.k))
    if d.kind == "/":
        return ExactDiv(g, sp.Integer(d.k))
    return sp.floor(g / d.k)


def affine_expr(a: Affine, names: dict[str, sp.Symbol]) -> sp.Expr:
    return sp.Add(
        sp.Integer(a.const),
        *[c * names[t] for t, c in a.coef],
        *[c * atom_expr(d, names) for d, c in a.atoms],
    )


def exact_tests(subs: Any) -> list[tuple[sp.Expr, int]]:
    """``(g, k)`` of every exact division in the subscript expressions ``subs``: the read is
    at a whole position where each ``g % k == 0``."""
    out = []
    for e in subs:
        for x in sp.preorder_traversal(e):
            if isinstance(x, ExactDiv):
                out.append((x.args[0], int(x.args[1])))
    return out


@dataclass
class Term:
    """One contribution to an adjoint in gather form (see the module docstring).

    ``free``: the adjoint's index symbols; ``loops``: remaining summed ``(symbol, lo, hi)``
    (``hi`` exclusive; bounds in ``lo{k}_t``/``hi{k}_t`` symbols); ``conds``: ``(e, L, U)``
    meaning ``L <= e <= U``; ``upstream``: ``(tensor, subscripts)`` of the adjoint read;
    ``factor``: ``∂E/∂R`` over placeholders; ``reads``: placeholder → ``(tensor, subscripts)``.
    """

    statement: int
    free: tuple[sp.Symbol, ...]
    loops: list[tuple[sp.Symbol, sp.Expr, sp.Expr]]
    conds: list[tuple[sp.Expr, sp.Expr, sp.Expr]]
    upstream: tuple[str, tuple[sp.Expr, ...]]
    factor: sp.Expr
    reads: dict[sp.Symbol, tuple[str, tuple[sp.Expr, ...]]]
    # a ``max=``/``min=`` statement: ``(reduction, values of its summed indices here)``; the
    # term is then multiplied by [these values are the first arg-max (arg-min) of the
    # statement's right side over its summed indices at this output point]
    selects: tuple[str, tuple[sp.Expr, ...]] | None = None
    padded: dict[sp.Symbol, tuple[bool, ...]] = field(default_factory=dict)  # as Local's


_POOL = "pqrsabcefghklm"


def adjoint_terms(
    prog: Program, name: str, example: Ranges, skip: frozenset = frozenset()
) -> tuple[tuple[sp.Symbol, ...], list[Term]]:
    """The gather-form terms of ``dL/d name``, with the free index symbols (names chosen for
    the document: the bare index of the first read where there is one, else p, q, ...);
    ``skip``: reads ``(statement, placeholder)`` whose terms are left out (the kernels add
    them as contractions)."""
    rank = prog.ranks[name]
    used = {t for st in prog.statements for t in st.indices}
    reads = []  # (k, Local, placeholder, subs)
    for k, st in enumerate(prog.statements):
        loc = local(k, st)
        for ph, tensor, subs in loc.reads:
            if tensor == name and (k, ph) not in skip:
                reads.append((k, loc, ph, subs))
    free_names: list[str] = []
    first = reads[0][3] if reads else ()
    pool = [c for c in _POOL if c not in used]
    for j in range(rank):
        t = first[j].bare() if first else None
        if t is not None and t not in free_names:
            free_names.append(t)
        else:
            free_names.append(pool.pop(0))
    free = tuple(idx_sym(n) for n in free_names)
    terms = []
    for k, loc, ph, subs in reads:
        st = prog.statements[k]
        factor = sp.diff(loc.expr, ph)
        if factor == 0:
            continue
        # the statement's indices, renamed where they would clash with the free ones
        names = {
            t: idx_sym(t if t not in free_names else _fresh(t, free_names, used))
            for t in st.indices
        }
        lo = {t: lo_sym(k, t) for t in st.indices}
        hi = {t: hi_sym(k, t) for t in st.indices}
        ext = {t: example.index[k][t][1] - example.index[k][t][0] for t in st.indices}
        solved: dict[sp.Symbol, sp.Expr] = {}
        if st.scalar:  # the scalar's one entry: no sum over its inner index
            solved[names[SCALAR_INDEX]] = sp.Integer(0)
        conds: list[tuple[sp.Expr, sp.Expr, sp.Expr]] = []
        inv = {v: t for t, v in names.items()}
        order = {v: n for n, v in enumerate(names.values())}
        # the division atoms of this read as variables: ``g // k`` is ``q`` and ``g % k`` is
        # ``r`` with ``g = k·q + r``, ``0 <= r < k`` (an exact ``g / k``: ``g = k·q``), each
        # equation solved below like a subscript's; the adjoint entry then gathers from the
        # ``k`` points (the filtered points) that read it, not from every output point
        aux = _Aux(k, st, names, example, {*used, *free_names})
        eqs = [(aux.lin(a), free[j]) for j, a in enumerate(subs)]
        for other, _, osubs in loc.reads:
            # another padded read with an exact division, where the term is 0 when that read
            # is (x * w's dw): the term sums over the points that divide evenly only, its
            # atoms solved too (a stride-2 transposed convolution's dw: half the points)
            if (
                other in loc.padded
                and any(d.kind == "/" for a in osubs for d in divisions(a))
                and sp.simplify(factor.xreplace({other: 0})) == 0
            ):
                for a in osubs:
                    aux.lin(a)
        eqs += [(g, sp.Integer(0)) for g in aux.constraints]
        for v, n in aux.ext.items():
            ext[v.name] = n
            inv[v] = v.name
            order[v] = len(order)
        for e, target in eqs:
            e = sp.expand(e.xreplace(solved))
            cands = [
                v for v in e.free_symbols if v in inv and v not in solved and abs(e.coeff(v)) == 1
            ]
            if cands:
                v = max(cands, key=lambda s: (ext[inv[s]], -order[s]))
                c = e.coeff(v)
                sol = sp.expand((target - (e - c * v)) / c)
                solved = {s: sp.expand(x.xreplace({v: sol})) for s, x in solved.items()}
                solved[v] = sol
                conds = [(sp.expand(ce.xreplace({v: sol})), L, U) for ce, L, U in conds]
                if v in aux.ext:
                    if v in aux.cond:
                        conds.append((sol, *aux.cond[v]))
                    continue
                t = inv[v]
                if not (t in example.bare[k] and sol == target):
                    conds.append((sol, lo[t], hi[t] - 1))
            else:
                # no index of coefficient ±1 (x[2*i]): the equation stays a condition, written
                # with every variable on one side so that it bounds the innermost loop
                conds.append((sp.expand(e - target), sp.Integer(0), sp.Integer(0)))
        conds = [(sp.expand(ce.xreplace(solved)), L, U) for ce, L, U in conds]
        loops = [(names[t], lo[t], hi[t]) for t in st.indices if names[t] not in solved]
        loops += [(v, a, b) for v, (a, b) in aux.loops.items() if v not in solved]

        def sub(a: Affine) -> sp.Expr:
            return sp.expand(aux.lin(a, new=False).xreplace(solved))

        up = tuple(
            sp.Integer(0) if t == SCALAR_INDEX else sp.expand(names[t].xreplace(solved) - lo[t])
            for t in st.lhs
        )
        term_reads = {p: (tensor, tuple(sub(a) for a in s)) for p, tensor, s in loc.reads}
        selects = None
        if st.reduce != "sum":
            at = tuple(sp.expand(names[t].xreplace(solved)) for t in st.summed)
            selects = (st.reduce, at)
        terms.append(
            Term(k, free, loops, conds, (st.target, up), factor, term_reads, selects, loc.padded)
        )
    return free, terms


class _Aux:
    """The division atoms of one read as new variables of a gradient term (see
    :func:`adjoint_terms`): ``lin`` writes a subscript with them, ``constraints`` ties each to
    its inner subscript, ``loops`` gives each its range should it stay a sum, ``cond`` the
    range a remainder keeps where it is solved, ``ext`` its extent on the example."""

    def __init__(self, k: int, st: Statement, names: dict, example: Ranges, taken: set):
        self.k, self.names, self.taken = k, names, set(taken) | set(st.indices)
        self.rng = {t: (lo_sym(k, t), hi_sym(k, t)) for t in st.indices}
        self.example = example.index[k]
        self.vars: dict[tuple, tuple[sp.Symbol, sp.Symbol | None]] = {}
        self.constraints: list[sp.Expr] = []
        self.loops: dict[sp.Symbol, tuple[sp.Expr, sp.Expr]] = {}
        self.cond: dict[sp.Symbol, tuple[sp.Expr, sp.Expr]] = {}
        self.ext: dict[sp.Symbol, int] = {}

    def _name(self, base: str) -> sp.Symbol:
        n = 1
        while (base if n == 1 else f"{base}{n}") in self.taken:
            n += 1
        name = base if n == 1 else f"{base}{n}"
        self.taken.add(name)
        return idx_sym(name)

    def lin(self, a: Affine, new: bool = True) -> sp.Expr:
        out = affine_expr(Affine(a.coef, a.const), self.names)
        for d, c in a.atoms:
            key = (d.inner, d.k, d.kind == "/")
            if key not in self.vars and new:
                self._make(d, key)
            if key in self.vars:
                q, r = self.vars[key]
                out += c * (r if d.kind == "%" and r is not None else q)
            else:
                out += c * atom_expr(d, self.names)
        return out

    def _make(self, d: Div, key: tuple) -> None:
        g = self.lin(d.inner)
        glo, ghi = _span(d.inner, self.rng)
        elo, ehi = _span(d.inner, self.example)
        exact = d.kind == "/"
        q = self._name("q")
        r = None if exact else self._name("r")
        self.vars[key] = (q, r)
        self.constraints.append(g - d.k * q - (r if r is not None else 0))
        qlo = _cdiv(glo, d.k) if exact else _fdiv(glo, d.k)
        self.loops[q] = (qlo, _fdiv(ghi, d.k) + 1)
        self.ext[q] = int(ehi) // d.k - int(elo) // d.k + 1 if _is_int(elo, ehi) else d.k + 1
        if r is not None:
            self.loops[r] = (sp.Integer(0), sp.Integer(d.k))
            self.cond[r] = (sp.Integer(0), sp.Integer(d.k - 1))
            self.ext[r] = d.k


def _fresh(t: str, taken: list[str], used: set[str]) -> str:
    for cand in (t + "_", t + "__", t + "2", t + "3"):
        if cand not in taken and cand not in used:
            return cand
    raise DefineError(f"define: cannot rename index {t!r}")
