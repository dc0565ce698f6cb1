r"""The symbolic face of a defined op: a :class:`Derivation` on concrete shapes, and the
general-size rules in index notation for its document.

The forward expressions and the closed-form gradients come from the same loop nests as the
kernels (:mod:`derivgrad.notation.codegen`, SymPy back end), so the proof that the closed form
equals the chain rule (the Jacobian contracted with δ) on the instance is a proof about the
rules the kernels run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from ..documents.document import tex, tex_name
from ..symbolic.derivation import Derivation, Rule
from ..symbolic.gcpause import paused
from ..symbolic.proofs import Proof, odd_signs
from ..symbolic.tensors import symbols
from .codegen import sympy_functions
from .parse import SCALAR_INDEX
from .program import Ranges, adjoint_terms, hi_sym, lo_sym

if TYPE_CHECKING:
    from ..documents.document import Block


class DefinedProof(Proof):
    """The proof of a defined op, trying in turn: expanding the difference; writing each
    ``e^a`` as a positive symbol and expanding the numerator over a common denominator; the
    same with every radical base ``B`` of ``B^{p/q}`` written as ``S^q``."""

    name = "expand-or-schwartz-zippel"

    def __init__(self, sides: Callable[[str], tuple[np.ndarray, np.ndarray]] | None = None):
        self.sentence = PROOF
        self._sides = sides

    def sides(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self._sides is None else self._sides(name)

    def is_zero(self, e: sp.Expr) -> bool:
        if e == 0:
            return True
        e = odd_signs(e)  # sign(u - x) and -sign(x - u): one form
        if e == 0:
            return True
        nodes = _nodes(e)
        if not any(isinstance(n, sp.exp) for n in nodes) and not any(
            n.is_Pow and not n.exp.is_Integer for n in nodes
        ):
            return sp.expand(e) == 0
        subs: dict[Any, Any] = {}
        bases: dict[Any, sp.Symbol] = {}
        for atom in (n for n in nodes if isinstance(n, sp.exp)):
            # expanded first: e^{-(u-x)^2} and e^{-(x-u)^2} (erf's derivative, from the
            # two sides) are one base
            c, a = sp.factor_terms(sp.expand(atom.args[0])).as_coeff_Mul()
            E = bases.setdefault(a, sp.Symbol(f"E{len(bases)}", positive=True))
            subs[atom] = E**c
        f = _replace(e, subs) if subs else e
        # B^{p/q} -> S^{p q_B / q} with B = S^{q_B} (q_B: the lcm of B's denominators): the
        # identity must then hold for any positive S, a rational function in S
        rad: dict[Any, int] = {}
        fnodes = _nodes(f)
        for p in fnodes:
            if p.is_Pow:
                b, x = p.args
                if x.is_Rational and not x.is_Integer:
                    rad[b] = int(sp.ilcm(rad.get(b, 1), x.q))
        if rad:
            S = {b: sp.Symbol(f"S{i}", positive=True) for i, b in enumerate(rad)}
            pows = {}
            for p in fnodes:
                if p.is_Pow:
                    b, x = p.args
                    if b in rad and x.is_Rational and not x.is_Integer:
                        pows[p] = S[b] ** int(x * rad[b])
            f = _replace(_replace(f, pows), {b: S[b] ** rad[b] for b in rad})
        if _rational(f):
            return _zero_at_random_points(f)
        f = sp.expand(f)
        if f == 0:
            return True
        num, _ = sp.fraction(sp.together(f))
        return sp.expand(num) == 0


# The expressions a proof compares share subexpressions (an adjoint read by every entry of a
# normalisation): the walks below visit each distinct node once, where SymPy's atoms,
# xreplace and evaluation walk the tree, every shared node again each time it occurs (batch
# norm (2, 3, 3, 3): 10 million visits for 54 entries).
def _nodes(e: Any) -> list[Any]:
    """The distinct nodes of ``e`` (by identity), each once."""
    seen: set[int] = set()
    out: list[Any] = []
    stack = [e]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        out.append(x)
        if isinstance(x, sp.Basic):
            stack.extend(x.args)
    return out


def _replace(e: Any, mapping: dict[Any, Any]) -> Any:
    """``e.xreplace(mapping)``: a node in ``mapping`` is replaced (nothing below it), every
    other node rebuilt from its replaced arguments when one changed."""
    memo: dict[int, Any] = {}

    def go(x: Any) -> Any:
        k = id(x)
        if k in memo:
            return memo[k]
        if x in mapping:
            y = mapping[x]
        elif isinstance(x, sp.Basic) and x.args:
            args = [go(a) for a in x.args]
            y = x.func(*args) if any(a is not b for a, b in zip(args, x.args)) else x
        else:
            y = x
        memo[k] = y
        return y

    return go(e)


PROOF = (
    "writing both over the named steps, each step's entries as free symbols (the closed form "
    "run on them; the chain rule statement by statement, each statement's local derivatives "
    "at the steps it reads, which is the chain rule of the composition), or else over the "
    "inputs alone; then "
    "expanding the difference of the two to zero; where exponentials or radicals occur, by "
    r"writing each $e^{a}$ and each radical $\sqrt[q]{B}$ as a positive symbol, which leaves a "
    "rational function, and evaluating it exactly at three random integer points of "
    r"$\{1, \dots, 2^{61}\}^n$ (Schwartz--Zippel: a non-zero rational function of degree "
    r"$d$ vanishes there with probability at most $d / 2^{61}$)"
)


def _rational(f: sp.Expr) -> bool:
    """Whether ``f`` is a rational function of its symbols (no function calls left)."""
    return all(
        not isinstance(n, sp.Function)
        and not (n.is_Pow and not n.exp.is_Integer)
        and not (n.is_Number and not n.is_Rational)
        for n in _nodes(f)
    )


def _zero_at_random_points(f: sp.Expr, points: int = 3) -> bool:
    """Schwartz–Zippel: a rational function that is not identically zero, of total degree
    ``d``, vanishes at a uniformly random point of ``{1..M}^n`` with probability at most
    ``d / M``.  Evaluated exactly (Python's fractions, each distinct subexpression once) at
    ``points`` points with ``M = 2^61``, a non-zero ``f`` passes with probability below
    ``(d / 2^61)^points``; a point where a denominator vanishes counts as "not zero"."""
    rng = random.Random(0x5EED)
    syms = sorted(f.free_symbols, key=str)
    for _ in range(points):
        try:
            v = _exact_value(f, {s: rng.randint(1, 2**61) for s in syms})
        except ZeroDivisionError:
            return False
        if v != 0:
            return False
    return True


def _exact_value(f: sp.Expr, point: dict[Any, int]) -> Fraction:
    """The exact value of the rational function ``f`` at ``point``."""
    memo: dict[int, Fraction] = {}

    def go(x: Any) -> Fraction:
        k = id(x)
        if k in memo:
            return memo[k]
        if x.is_Symbol:
            v = Fraction(point[x])
        elif x.is_Rational:
            v = Fraction(int(x.p), int(x.q))
        elif x.is_Add:
            v = sum((go(a) for a in x.args), Fraction(0))
        elif x.is_Mul:
            v = Fraction(1)
            for a in x.args:
                v *= go(a)
        elif x.is_Pow and x.exp.is_Integer:
            v = go(x.base) ** int(x.exp)
        else:  # _rational(f) held: no other node
            raise TypeError(f"not a rational function: {x}")
        memo[k] = v
        return v

    return go(f)


def build(op: Any, shapes: dict[str, tuple[int, ...]]) -> Derivation:
    prog = op.program
    ranges = prog.infer(shapes, fixed=op.fixed)
    fwd, bwd = sympy_functions(prog, ranges)
    inputs = {k: symbols(k, shapes[k], latex=tex_name(k), real=True) for k in prog.inputs}
    T = {n: np.empty(ranges.shapes[n], dtype=object) for n in prog.defined}
    with paused():
        fwd(None, *inputs.values(), *T.values())
    # several outputs: the derivation's output is their entries one after another, in the
    # order of the statements, and so is its upstream δ
    outs = prog.outputs
    y = T[outs[0]] if len(outs) == 1 else np.concatenate([T[o].reshape(-1) for o in outs])
    up = symbols("d", y.shape, latex=r"\delta", real=True)
    pieces, at = {}, 0
    for o in outs:
        pieces[o] = up if len(outs) == 1 else up[at : at + T[o].size].reshape(T[o].shape)
        at += T[o].size
    cache: dict[str, dict[str, np.ndarray]] = {}

    def grads() -> dict[str, np.ndarray]:
        if "g" not in cache:
            adj = {n: np.empty(T[n].shape, dtype=object) for n in prog.defined if n not in outs}
            adj.update(pieces)
            g = {k: np.empty(v.shape, dtype=object) for k, v in inputs.items()}
            bwd(
                None,
                *inputs.values(),
                *T.values(),
                *[adj[n] for n in prog.defined],
                *g.values(),
            )
            cache["g"] = g
        return cache["g"]

    def form(k: str) -> Callable[[], np.ndarray]:
        return lambda: grads()[k]

    # each tensor a statement defines before the output is a named step: the document
    # writes it by name (print_as), and the steps section defines each name
    steps = {n: symbols(n, T[n].shape, latex=tex_name(n), real=True) for n in prog.defined[:-1]}
    # the structural proof takes the last statement's tensor as the one output; with several
    # outputs the proof differentiates the inlined forward instead
    one_output = len(outs) == 1
    sides = _stepwise(op, inputs, steps, T, up, bwd) if steps and one_output else None
    print_as: dict[Any, Any] = {}
    for n in steps:
        for e, s in zip(T[n].reshape(-1), steps[n].reshape(-1)):
            if isinstance(e, sp.Basic) and not e.is_Atom:
                # also as written with the earlier steps' names, which is how it is found
                # once those are replaced (a sum of them inside a longer sum)
                short = e.xreplace(print_as)
                print_as[e] = s
                if not short.is_Atom:
                    print_as.setdefault(short, s)
    extra = {"steps": {n: T[n] for n in steps}, "step_symbols": steps, "print_as": print_as}
    # a formula, then prose: rule_tex sets "the ..." after the comma as text, not mathematics
    rules = {
        k: Rule(f"∂L/∂{k}, the general-size rule in index notation below", form(k))
        for k in prog.inputs
    }
    return Derivation(
        op=op.name,
        params={k: shapes[k] for k in prog.inputs},
        inputs=inputs,
        output=y,
        upstream=up,
        rules=rules,
        proof=DefinedProof(sides),
        notes=[
            "the closed form is the reverse-mode rule in gather form evaluated on this instance"
        ],
        extra=extra if steps else None,
    )


def _stepwise(
    op: Any,
    inputs: dict[str, np.ndarray],
    steps: dict[str, np.ndarray],
    T: dict[str, np.ndarray],
    up: np.ndarray,
    bwd: Callable[..., None],
) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    r"""The two sides of the structural proof of a definition with named steps, for each
    input: the closed form (the generated backward, the same loops as the instance's closed
    form) run with each step's entries as free symbols, and the chain rule taken statement by
    statement in scatter form,

    .. math:: \bar R[j] = \sum_{T \text{ reads } R} \sum_i
              \frac{\partial T[i]}{\partial R[j]}\, \bar T[i],

    each statement's local derivatives taken by the engine's sparse Jacobian of its entries
    written over what it reads (:func:`statement_forms`), the statements from the last.
    This is the chain rule of the composition, so where the two agree as functions of free
    step symbols they agree at the steps' values, where the closed form of the instance is
    the closed form run on them: the gradient is proved without differentiating the
    inlined forward expressions (group norm at (2, 2, 2, 3, 3): minutes that way)."""
    prog = op.program
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def both() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if cache:
            return cache
        from ..symbolic.tensors import total

        names = {**inputs, **steps}
        # a statement that reads inputs only has the instance's entries already
        done = {
            n: T[n]
            for n in prog.defined
            if all(r in inputs for r, _, _ in prog.statements[prog.stmt_of[n]].refs)
        }
        forms = {**done, **statement_forms(op, names, skip=frozenset(done))}
        adj: dict[str, list[list[Any]]] = {}
        bars: dict[str, np.ndarray] = {prog.output: up}
        for n in reversed(prog.defined):
            if n not in bars:  # every statement reading step n comes after it: all summed
                bars[n] = _summed(adj.get(n), steps[n].shape)
            st = prog.statements[prog.stmt_of[n]]
            reads = list(dict.fromkeys(r for r, _, _ in st.refs))
            local = Derivation(
                op=f"{op.name}:{n}",
                params={},
                inputs={r: names[r] for r in reads},
                output=forms[n],
                upstream=bars[n],
                rules={},
            )
            for r in reads:
                part = local.chain_array(r)
                acc = adj.setdefault(r, [[] for _ in range(part.size)])
                for j, e in enumerate(part.reshape(-1)):
                    if e != 0:
                        acc[j].append(e)
        cl = {k: np.empty(v.shape, dtype=object) for k, v in inputs.items()}
        bar_steps = {n: np.empty(T[n].shape, dtype=object) for n in prog.defined[:-1]}
        bwd(
            None,
            *inputs.values(),
            *[steps[n] for n in prog.defined[:-1]],
            T[prog.output],
            *bar_steps.values(),
            up,
            *cl.values(),
        )
        for k, v in inputs.items():
            cache[k] = (cl[k], _summed(adj.get(k), v.shape, total))
        return cache

    return lambda name: both()[name]


def _summed(parts: list[list[Any]] | None, shape: tuple[int, ...], add: Any = None) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    flat = out.reshape(-1)
    for k in range(flat.size):
        terms = parts[k] if parts else []
        flat[k] = (add or (lambda a: sp.Add(*a)))(terms) if terms else sp.Integer(0)
    return out


# -- named steps ------------------------------------------------------------------------------
def step_forms(op: Any, d: Derivation) -> dict[str, np.ndarray]:
    """Each step's entries written with what its statement reads (the inputs and the steps
    before it, by name), from its statement alone run on symbols: exact by construction."""
    return statement_forms(op, {**d.input_arrays, **d.extra.get("step_symbols", {})})


def statement_forms(
    op: Any, names: dict[str, np.ndarray], skip: frozenset[str] = frozenset()
) -> dict[str, np.ndarray]:
    """Each defined tensor's entries written with what its statement reads (``names``: the
    inputs' and the steps' symbols), from its statement alone run on symbols; not those of
    ``skip``."""
    from .program import Program

    prog = op.program
    ranges = prog.infer({k: names[k].shape for k in prog.inputs}, fixed=op.fixed)
    out: dict[str, np.ndarray] = {}
    for n in prog.defined:
        if n in skip:
            continue
        st = prog.statements[prog.stmt_of[n]]
        one = Program([st], {r: prog.ranks[r] for r, _, _ in st.refs})
        shapes = {r: names[r].shape for r in one.inputs}
        fixed = {t: v for t, v in op.fixed.items() if t in st.indices}
        fwd, _ = sympy_functions(one, one.infer(shapes, fixed=fixed))
        T = np.empty(ranges.shapes[n], dtype=object)
        fwd(None, *[names[r] for r in one.inputs], T)
        out[n] = T
    return out


def step_blocks(op: Any, d: Derivation) -> list[Block]:
    """The named steps of a definition of several statements: each step's entries, its local
    derivatives with respect to what it reads, and its numbers when the document has them."""
    from ..documents.document import entry_rows, indexed
    from ..documents.instance import evaluate, substitutions
    from ..documents.numeric_steps import array_tex

    full = d.extra.get("steps")
    if not full:
        return []
    prog = op.program
    forms = step_forms(op, d)
    names = {**d.input_arrays, **d.extra["step_symbols"]}
    out: list[Block] = [("h", (2, "Named steps"))]
    listed = ", ".join(f"${tex_name(n)}$" for n in full)
    out.append(
        (
            "p",
            f"The definition computes {listed} before the output: each is a step, written "
            "below with what its statement reads (the inputs and the steps before it), and "
            "the rest of the document writes it by its name.",
        )
    )
    values = substitutions(d) if getattr(d, "values", None) else {}
    for n in full:
        st = prog.statements[prog.stmt_of[n]]
        out.append(
            (
                "p",
                f"Step ${tex_name(n)}$, statement {prog.stmt_of[n] + 1} "
                rf"(\texttt{{{_tt(st.text)}}}):",
            )
        )
        rows, note = entry_rows(lambda idx, n=n: indexed(tex_name(n), idx), forms[n], lambda e: e)
        out.append(("eq", rows))
        if note:
            out.append(("p", note))
        reads = list(dict.fromkeys(r for r, _, _ in st.refs))
        for r in reads:
            where = {names[r][j]: j for j in np.ndindex(*names[r].shape)}
            total = forms[n].size * names[r].size
            # only the entries of r that occur in an entry can have a non-zero derivative
            J = [
                (indexed(tex_name(n), i), indexed(tex_name(r), where[v]), sp.diff(forms[n][i], v))
                for i in np.ndindex(*forms[n].shape)
                for v in sorted(_free(forms[n][i]) & where.keys(), key=lambda v: where[v])
            ]
            nonzero = [(a, b, e) for a, b, e in J if e != 0]
            shown = nonzero[:12]
            out.append(
                (
                    "p",
                    f"Its local derivatives with respect to ${tex_name(r)}$ "
                    f"({len(nonzero)} of the {total} entries are not 0"
                    + (f"; the first {len(shown)} are printed" if len(shown) < len(nonzero) else "")
                    + "):",
                )
            )
            out.append(
                (
                    "eq",
                    [(r"\frac{\partial %s}{\partial %s}" % (a, b), [tex(e)]) for a, b, e in shown],
                )
            )
        if values:
            out.append(("p", f"With the given numbers, ${tex_name(n)}$ is:"))
            out.append(("eq", [(tex_name(n), [array_tex(evaluate(full[n], values))])]))
    return out


# -- general sizes ---------------------------------------------------------------------------
def general_sizes(op: Any) -> tuple[dict[str, tuple[sp.Symbol, ...]], list]:
    """A symbol per input axis (``N_c`` after the first index read alone on it, else
    ``n^{x}_{3}``) and the pairs of symbols the definition forces equal."""
    sizes: dict[str, tuple[sp.Symbol, ...]] = {}
    named: dict[tuple[str, int], str] = {}
    for st in op.program.statements:
        for name, subs, _ in st.refs:
            for axis, a in enumerate(subs):
                t = a.bare()
                if t is not None and name in op.example:
                    named.setdefault((name, axis), t)
    for k, shape in op.example.items():
        sizes[k] = tuple(
            sp.Symbol(
                f"N_{{{named[(k, a)]}}}" if (k, a) in named else f"n^{{{k}}}_{{{a + 1}}}",
                positive=True,
                integer=True,
            )
            for a in range(len(shape))
        )
    ranges = op.program.infer(sizes, check=False, fixed=op.fixed)
    return sizes, ranges.equal


def general_ranges(op: Any) -> Ranges:
    sizes, equal = general_sizes(op)
    rep: dict[Any, Any] = {}
    for a, b in equal:
        rep[b] = rep.get(a, a)
    return op.program.infer(
        {k: tuple(rep.get(s, s) for s in v) for k, v in sizes.items()}, check=False, fixed=op.fixed
    )


def _rule_tex(op: Any, name: str, ranges: Ranges) -> str:
    prog = op.program
    free, terms = adjoint_terms(prog, name, op.example_ranges)
    bounds = {}
    for k, st in enumerate(prog.statements):
        for t in st.indices:
            lo, hi = ranges.index[k][t]
            bounds[lo_sym(k, t)] = lo
            bounds[hi_sym(k, t)] = hi

    def bar(t: str) -> str:
        return r"\delta" if prog.outputs == [t] else r"\bar{%s}" % tex_name(t)

    # printed 1-based, as the document's indices are: an index symbol t stands for the
    # 0-based t - 1, and a subscript, a bound or a condition on an index moves up by one
    one: dict[Any, Any] = {f: f - 1 for f in free}

    def up(e: Any) -> Any:
        return sp.simplify((e.xreplace(one) + 1).xreplace(bounds))

    parts = []
    for term in terms:
        one.update({v: v - 1 for v, _, _ in term.loops})
        s = ""
        for v, lo, hi in term.loops:
            s += r"\sum_{%s=%s}^{%s}" % (tex(v), tex(up(lo)), tex(up(hi - 1)))
        conds = ""
        for e, L, U in term.conds:
            L, U = up(L), up(U)
            if L == U:
                conds += r"\,[%s = %s]" % (tex(up(e)), tex(L))
            else:
                conds += r"\,[%s \le %s \le %s]" % (tex(L), tex(up(e)), tex(U))
        tensor, subs = term.upstream
        ups = sp.Indexed(sp.IndexedBase(bar(tensor)), *[up(x) for x in subs])
        reads = {
            ph: sp.Indexed(sp.IndexedBase(tex_name(t)), *[up(x) for x in ss])
            for ph, (t, ss) in term.reads.items()
        }
        body = (ups * term.factor.xreplace(reads)).xreplace(bounds)
        if term.selects is not None:
            conds += _selects_tex(prog, term, up)
        parts.append(s + conds + r"\, " + tex(body))
    lhs = r"\frac{\partial L}{\partial %s_{%s}}" % (tex_name(name), ",".join(tex(f) for f in free))
    return lhs + " = " + (" + ".join(parts) if parts else "0")


def _exact(prog: Any) -> bool:
    """Whether a read's subscript holds an exact division (``(x[(i - u) / 2] ?? 0)``)."""
    from .parse import divisions

    return any(
        d.kind == "/"
        for st in prog.statements
        for _, subs, _ in st.refs
        for a in subs
        for d in divisions(a)
    )


def _selects_tex(prog: Any, term: Any, up: Callable[[Any], Any]) -> str:
    """The indicator of a ``max=``/``min=`` term: ``[(u, v) = arg max_{(u', v')} E]``, ``E``
    at this term's output point with the summed indices primed (1-based, as ``up`` prints)."""
    from .program import affine_expr, local

    k = term.statement
    st = prog.statements[k]
    reduce, at = term.selects
    lhs_at = {t: up_ + lo_sym(k, t) for t, up_ in zip(st.lhs, term.upstream[1])}
    primed = {t: sp.Symbol(tex(sp.Symbol(t)) + "'", integer=True) for t in st.summed}
    where = {**{sp.Symbol(t, integer=True): v for t, v in lhs_at.items()}}
    where.update({sp.Symbol(t, integer=True): primed[t] - 1 for t in st.summed})
    loc = local(k, st)
    reads = {}
    for ph, tensor, subs in loc.reads:
        names = {t: sp.Symbol(t, integer=True) for t in st.indices}
        idx = [up(affine_expr(a, names).xreplace(where)) for a in subs]
        reads[ph] = sp.Indexed(sp.IndexedBase(tex_name(tensor)), *idx)
    e = loc.expr.xreplace(reads)
    pts = [tex(up(a)) for a in at]
    dummies = [tex(primed[t]) for t in st.summed]

    def tup(items: list[str]) -> str:
        return items[0] if len(items) == 1 else "(" + ", ".join(items) + ")"

    return r"\,\left[%s = \operatorname*{arg\,%s}_{%s} %s\right]" % (
        tup(pts),
        reduce,
        tup(dummies),
        tex(e),
    )


def sections(op: Any, d: Derivation) -> list[Block]:
    """The definition, its index ranges for general sizes and the gradient of every tensor in
    index notation (derived, not typed)."""
    prog = op.program
    ranges = general_ranges(op)
    out: list[Block] = [("h", (2, "General-size rules in index notation"))]
    defs = "; ".join(rf"\texttt{{{_tt(st.text)}}}" for st in prog.statements)
    out.append(("p", f"The definition: {defs}."))
    lines = []
    for k, st in enumerate(prog.statements):
        rs = ", ".join(
            r"$%s \in \{%s, \dots, %s\}$"
            % (
                t,
                tex(sp.simplify(ranges.index[k][t][0] + 1)),
                tex(sp.simplify(ranges.index[k][t][1])),
            )
            for t in st.indices
            if t != SCALAR_INDEX  # a scalar's inner index is no index of the text
        )
        lines.append(f"statement {k + 1}: {rs}" if rs else f"statement {k + 1}: a scalar")
    out.append(
        (
            "p",
            "Index ranges for general sizes (an index read alone takes its axis's extent; "
            "an index inside an affine subscript takes the largest range that keeps every read "
            r"in bounds; counted from 1, as every index here; a tensor defined on the left is "
            r"stored from 1, at $t - \mathrm{lo}_t + 1$ for an index that starts at "
            r"$\mathrm{lo}_t$): " + "; ".join(lines) + ".",
        )
    )
    out.append(
        (
            "p",
            r"Reverse mode, statement by statement from the last, with $\bar{T} = \partial L/"
            r"\partial T$ for each defined tensor and $\delta$ for the output; the equations "
            r"between subscripts are solved for one index each, and the brackets "
            r"$[\cdot]$ are 1 when the condition holds and 0 otherwise"
            + (
                r"; $\arg\max$ ($\arg\min$) is the first maximum (minimum) in row-major order "
                "of the primed indices, the tie rule of the built-in max pooling, so a tie "
                "sends the whole gradient to one entry:"
                if any(st.reduce != "sum" for st in prog.statements)
                else ":"
            ),
        )
    )
    padded = sorted({st.refs[r][0] for st in prog.statements for r in st.padded})
    if padded:
        listed = ", ".join(f"${tex_name(n)}$" for n in padded)
        out.append(
            (
                "p",
                f"Zero padding: {listed} at a subscript outside its shape (a read written "
                r"\texttt{?? 0}) is 0, in the definition and in the rules below"
                + (
                    r"; so is such a read at $\frac{e}{k}$ where $k$ does not divide $e$ (a "
                    "subscript written e / k)."
                    if _exact(prog)
                    else "."
                ),
            )
        )
    eqs = []
    if len(prog.outputs) > 1:
        listed = ", ".join(f"${tex_name(n)}$" for n in prog.outputs)
        out.append(
            (
                "p",
                f"Several outputs, {listed} (no later statement reads them): the output above is "
                r"their entries one after another, $\delta$ likewise, and $\bar{T}$ of an "
                r"output is its part of $\delta$.",
            )
        )
    order = [n for n in reversed(prog.defined) if n not in prog.outputs] + list(prog.inputs)
    for name in order:
        lhs, rhs = _rule_tex(op, name, ranges).split(" = ", 1)
        eqs.append((lhs, [rhs]))
    out.append(("eq", eqs))
    return out


def _tt(s: str) -> str:
    # "%" (a remainder, i % 2) is left to the LaTeX writer, which escapes it in all prose:
    # escaped here too it would print as "\\%" there and as "\%" in the other formats
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("&", r"\&"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("^", r"\^{}"),
        ("~", r"\~{}"),
    ):
        s = s.replace(a, b)
    return s


def _free(e: Any) -> set[Any]:
    """The symbols in a step's entry (a SymPy expression, or a plain number: none)."""
    return set(e.free_symbols) if isinstance(e, sp.Basic) else set()
