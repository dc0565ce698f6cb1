r"""The derivation object every op builds: forward expressions, Jacobian, chain rule,
closed-form rule, proof, NumPy functions.

Jacobian layout: ``jacobian(name)`` has shape ``inputs[name].shape + output.shape`` — the
convention of SymPy's ``derive_by_array`` (PyTorch's ``jacobian`` puts the output first):

.. math:: J[i, o] = \frac{\partial\, \mathrm{output}[o]}{\partial\, \mathrm{input}[i]}, \qquad
          \mathrm{chain}[i] = \sum_o J[i, o]\, \delta[o]

where ``δ = upstream`` is the gradient of the loss with respect to the output.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from .gcpause import paused
from .proofs import Expand, Proof
from .tensors import times, to_array, total

# The document face registers its renderer here when it is imported
# (derivgrad.documents.render): the symbolic engine never imports the renderer — a
# derivation is data, and rendering is a function of it.  derivgrad.derive() imports the
# renderer, so the face is always there for derivations a user gets.
_RENDERERS: list = []


def register_renderer(render: Callable[..., str]) -> None:
    """Called once by :mod:`derivgrad.documents.render` with
    ``render(derivation, fmt, **kw) -> str``."""
    _RENDERERS[:] = [render]


def _document_face():
    if not _RENDERERS:
        raise RuntimeError(
            "no document renderer registered: import derivgrad.documents.render first"
        )
    return _RENDERERS[0]


def _idx(shape):
    return itertools.product(*(range(n) for n in shape))


def _partials(expr, wanted):
    """``{s: ∂expr/∂s}`` for the symbols of ``wanted`` that occur in ``expr``, differentiating
    each term of a sum only by the symbols it contains (a product of distinct factors by
    dropping the factor: no ``diff`` call)."""
    out: dict = {}
    for term in sp.Add.make_args(expr):
        if type(term) is sp.Mul and len(term.args) == 2:
            a, b = term.args
            if type(a) is sp.Symbol and type(b) is sp.Symbol and a != b:
                # w·x, the term of every convolution and product: ∂/∂w = x, ∂/∂x = w
                if a in wanted:
                    out.setdefault(a, []).append(b)
                if b in wanted:
                    out.setdefault(b, []).append(a)
                continue
        hit = term.free_symbols & wanted
        if not hit:
            continue
        factors = sp.Mul.make_args(term)
        for s in hit:
            if s in factors and sum(1 for f in factors if f.has(s)) == 1:
                k = factors.index(s)
                dv = sp.Mul(*(factors[:k] + factors[k + 1 :]))
            else:
                dv = sp.diff(term, s)
            out.setdefault(s, []).append(dv)
    return {s: v[0] if len(v) == 1 else sp.Add(*v) for s, v in out.items()}


class _Monomials:
    """Sums of monomials compared as multisets, without building SymPy sums: a monomial is
    a product of distinct plain commutative symbols with coefficient 1 — the terms of a
    convolution's or a linear layer's closed form and chain rule — written as the sorted
    identities of its symbol objects.  Exact: an ``Add`` is the sum of its terms, a ``Mul``
    the product of its factors, a symbol object denotes its variable, so equal multisets are
    equal polynomials.  Only the derivation's own input and upstream symbols count (``plain``,
    identities of objects the derivation keeps alive), and ``memo`` holds the monomial of
    each term object of the closed forms, which the derivation also keeps alive."""

    def __init__(self, symbols: Iterable[Any]) -> None:
        self.plain = {id(s) for s in symbols if type(s) is sp.Symbol and s.is_commutative}
        self.memo: dict[int, tuple[int, ...] | None] = {}

    def of(self, t: Any) -> tuple[int, ...] | None:
        key = id(t)
        if key in self.memo:
            return self.memo[key]
        m: tuple[int, ...] | None = None
        if key in self.plain:
            m = (key,)
        elif t is sp.S.One:
            m = ()
        elif type(t) is sp.Mul:
            ids = [id(f) for f in t.args]
            if all(i in self.plain for i in ids) and len(set(ids)) == len(ids):
                m = tuple(sorted(ids))
        self.memo[key] = m
        return m

    def same(self, g: Any, row: list, upstream: np.ndarray) -> bool:
        """Whether the closed-form entry ``g`` and the chain-rule entry ``Σ_o J[o] δ[o]``
        (``row``: the Jacobian's non-zeros ``(o, J[o])``) are the same sum of monomials;
        ``False`` only means "not shown this way" (the caller then compares the full
        expressions)."""
        terms = g.args if type(g) is sp.Add else (() if g is sp.S.Zero else (g,))
        if len(terms) != len(row):
            return False
        plain, of = self.plain, self.of
        gm: list[tuple[int, ...]] = []
        for t in terms:
            if type(t) is sp.Mul and len(t.args) == 2:  # w·x: the common case, inline
                a, b = id(t.args[0]), id(t.args[1])
                if a in plain and b in plain and a != b:
                    gm.append((a, b) if a < b else (b, a))
                    continue
            m = of(t)
            if m is None:
                return False
            gm.append(m)
        cm: list[tuple[int, ...]] = []
        for o, v in row:
            u = upstream[o]
            iv, iu = id(v), id(u)
            if iv in plain and iu in plain and iv != iu:
                cm.append((iv, iu) if iv < iu else (iu, iv))
                continue
            m = of(v)
            if m is None:
                return False
            if u is not sp.S.One:
                if iu not in plain or iu in m:
                    return False
                m = tuple(sorted(m + (iu,)))
            cm.append(m)
        gm.sort()
        cm.sort()
        return gm == cm


@dataclass(frozen=True)
class Rule:
    """One input's closed-form gradient: the compact rule in words (Unicode; documents print
    it) and the function that builds it (called once, when the form is first asked for), kept
    together so that a rule cannot lose its form or its text."""

    text: str
    form: Callable[[], Any]


class Derivation:
    """Built by an op's symbolic face (see :mod:`derivgrad.registry`); users get it from
    :func:`derivgrad.derive`.

    Attributes:
        op, params: what was derived.
        inputs: ``{name: sympy.Array}`` of symbols (``"x"``, ``"w"``, ``"b"``, ...).
        output: ``sympy.Array`` of the forward expressions (a loss is a 1-element Array).
        upstream: ``sympy.Array`` of ``δ`` symbols shaped like ``output`` (ones for a loss).
        rules: ``{name: Rule}``, the compact rule that :meth:`grad` implements, for each input
            that has a closed form.
        proof: how :meth:`verify` proves equality, a :class:`derivgrad.symbolic.proofs.Proof`
            (``Expand()``, ``Rational(...)``, ``Radical(...)``).
    """

    def __init__(
        self,
        *,
        op: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, Any],
        output: Any,
        upstream: Any,
        rules: Mapping[str, Rule],
        proof: Proof | None = None,
        notes: Iterable[str] = (),
        extra: Mapping[str, Any] | None = None,
        constants: Mapping[Any, Any] | None = None,
    ) -> None:
        self.op = op
        self.params = dict(params)
        self._inputs = {k: np.asarray(v, dtype=object) for k, v in inputs.items()}
        self._output = np.asarray(output, dtype=object)
        self._upstream = np.asarray(upstream, dtype=object)
        self.rules = dict(rules)
        self.proof = proof if proof is not None else Expand()
        self.notes = list(notes)
        self.extra = extra or {}  # op-specific intermediate arrays for documents
        self.constants = dict(constants or {})  # {symbol: number} fixed for lambdify (e.g. ε)
        self._cache: dict[tuple[str, Any], Any] = {}
        self.timings: dict[str, float] = {}
        # True once verify() ran and held for every closed form: documents say "proved" only
        # then, and "not verified" otherwise
        self.verified = False
        # numbers for some inputs and δ (a numeric instance, derivgrad.documents.instance.attach):
        # {name: object array of exact numbers}; empty for a purely symbolic derivation
        self.values: dict = {}

    # -- the public views ------------------------------------------------------------
    @property
    def input_arrays(self) -> dict[str, np.ndarray]:
        """``{name: object array}`` of the input symbols (NumPy object arrays, for documents
        and rules that index and reshape them; ``inputs`` gives ``sympy.Array`` s)."""
        return dict(self._inputs)

    @property
    def output_array(self) -> np.ndarray:
        """The forward expressions as a NumPy object array."""
        return self._output

    @property
    def upstream_array(self) -> np.ndarray:
        """The upstream-gradient symbols δ (ones for a loss) as a NumPy object array."""
        return self._upstream

    @property
    def grad_names(self) -> list[str]:
        """The inputs that have a closed-form gradient, in the op's order."""
        return list(self.rules)

    @property
    def inputs(self) -> dict[str, sp.Array]:
        return {k: to_array(v) for k, v in self._inputs.items()}

    @property
    def output(self) -> sp.Array:
        return to_array(self._output)

    @property
    def upstream(self) -> sp.Array:
        return to_array(self._upstream)

    def _check(self, name):
        if name not in self._inputs:
            raise KeyError(f"{self.op}: no input named {name!r}; inputs are {sorted(self._inputs)}")

    def _sparse_jacobian(self, name):
        """``{input index: [(output index, ∂output/∂input), ...]}``, the non-zeros only.

        Each output expression is walked once for all inputs, term by term: a term is
        differentiated only with respect to the input symbols it contains, so the work grows
        with the non-zeros of the Jacobian, not with input size × output size (conv2d 28×28
        with a 5×5 filter: 14 400 non-zeros of 451 584 entries)."""
        self._check(name)
        key = ("Jsparse", name)
        if key not in self._cache:
            t = time.perf_counter()
            with paused():
                # the input entries of each symbol, found by the symbol object's identity (a C
                # dict lookup; SymPy's hash of a symbol is a Python call) or, for an equal
                # symbol that is another object, by equality
                where: dict[int, list] = {}
                canon: dict[Any, int] = {}
                rows: dict[str, dict] = {}
                for k, x in self._inputs.items():
                    rows[k] = {i: [] for i in _idx(x.shape)}
                    for i in _idx(x.shape):
                        if isinstance(x[i], sp.Symbol):
                            ref = canon.setdefault(x[i], id(x[i]))
                            where.setdefault(ref, []).append((k, i))
                wanted = set(canon)
                y = self._output
                for o in _idx(y.shape):
                    local: dict[int, list] = {}
                    for term in sp.Add.make_args(y[o]):
                        if type(term) is sp.Mul and len(term.args) == 2:
                            a, b = term.args
                            if type(a) is sp.Symbol and type(b) is sp.Symbol and a != b:
                                # w·x, the term of every convolution and product:
                                # ∂/∂w = x, ∂/∂x = w
                                ka = id(a) if id(a) in where else canon.get(a)
                                kb = id(b) if id(b) in where else canon.get(b)
                                if ka is not None:
                                    local.setdefault(ka, []).append(b)
                                if kb is not None:
                                    local.setdefault(kb, []).append(a)
                                continue
                        for s, v in _partials(term, wanted).items():
                            local.setdefault(canon[s], []).append(v)
                    for ref, parts in local.items():
                        v = parts[0] if len(parts) == 1 else sp.Add(*parts)
                        if type(v) is sp.Symbol or v != 0:
                            for k, i in where[ref]:
                                rows[k][i].append((o, v))
            for k, r in rows.items():
                self._cache[("Jsparse", k)] = r
            self.timings["jacobian"] = time.perf_counter() - t
        return self._cache[key]

    def jacobian_array(self, name: str) -> np.ndarray:
        """Object-array Jacobian, shape ``inputs[name].shape + output.shape`` (built from the
        non-zeros of :meth:`_sparse_jacobian`)."""
        key = ("J", name)
        if key not in self._cache:
            rows = self._sparse_jacobian(name)
            x, y = self._inputs[name], self._output
            J = np.empty(x.shape + y.shape, dtype=object)
            J.fill(sp.Integer(0))
            for i, row in rows.items():
                for o, v in row:
                    J[i + o] = v
            self._cache[key] = J
        return self._cache[key]

    def jacobian(self, name: str) -> sp.Array:
        """``∂output/∂inputs[name]``, a ``sympy.Array`` of shape ``input.shape + output.shape``."""
        return to_array(self.jacobian_array(name))

    def chain_array(self, name: str) -> np.ndarray:
        """The chain rule as a tensor contraction: ``Σ_o J[i, o] δ[o]``, shape of the input
        (over the non-zeros of the Jacobian only)."""
        key = ("chain", name)
        if key not in self._cache:
            rows = self._sparse_jacobian(name)
            x = self._inputs[name]
            d = self._upstream
            out = np.empty(x.shape, dtype=object)
            with paused():
                for i in _idx(x.shape):
                    out[i] = total([times(v, d[o]) for o, v in rows[i]])
            self._cache[key] = out
        return self._cache[key]

    def chain(self, name: str) -> sp.Array:
        return to_array(self.chain_array(name))

    def grad_array(self, name: str) -> np.ndarray:
        self._check(name)
        key = ("grad", name)
        if key not in self._cache:
            t = time.perf_counter()
            with paused():
                self._cache[key] = np.asarray(self.rules[name].form(), dtype=object)
            self.timings[f"closed form {name}"] = time.perf_counter() - t
        return self._cache[key]

    def grad(self, name: str) -> sp.Array:
        """The closed-form gradient ``dL/d inputs[name]`` from the op's compact rule (not from
        the Jacobian), in the symbols of ``inputs`` and ``upstream``."""
        return to_array(self.grad_array(name))

    # -- proof ---------------------------------------------------------------------
    def _is_zero(self, e: Any) -> bool:
        return self.proof.is_zero(e)

    def verify(self, names: Iterable[str] | None = None) -> bool:
        """Prove ``grad(name) == chain(name)`` entry by entry, symbolically.

        The derivation's :attr:`proof` decides each entry (see
        :mod:`derivgrad.symbolic.proofs`), after proving its lemmas.  The kinks (ReLU, max
        pooling) are functions whose derivatives carry the kernels' conventions, so they need no
        case split.  Returns ``True``, or raises
        ``AssertionError`` naming the first entry that differs.
        """
        t = time.perf_counter()
        for lemma in self.proof.lemmas:
            if not lemma.proof():
                raise AssertionError(f"{self.op}: could not prove {lemma.statement}")
        with paused():
            monomials = _Monomials(
                itertools.chain(self._upstream.flat, *(x.flat for x in self._inputs.values()))
            )
            for name in names or self.rules:
                self._verify(name, monomials)
        self.timings["verify"] = time.perf_counter() - t
        if names is None or set(names) >= set(self.rules):
            self.verified = True
        return True

    def _verify(self, name: str, monomials: _Monomials) -> None:
        shape = self._inputs[name].shape
        alt = self.proof.sides(name)
        if alt is not None and alt[0].shape == alt[1].shape == shape:
            # the proof's structural sides: the closed form itself is not needed for entries
            # they prove (it is the same function, see Proof.sides)
            ga, ca = alt
            left = [i for i in _idx(shape) if not (ga[i] == ca[i] or self._is_zero(ga[i] - ca[i]))]
            if not left:
                return
        else:
            left = list(_idx(shape))
        g = self.grad_array(name)
        if g.shape != shape:
            raise AssertionError(
                f"{self.op}: closed form for {name} has shape {g.shape}, chain {shape}"
            )
        rows = self._sparse_jacobian(name)
        c = None
        for i in left:
            # a sum of products of distinct symbols (a convolution's, a linear layer's): the
            # two sides' monomials compared, the chain rule's sum never built
            if monomials.same(g[i], rows[i], self._upstream):
                continue
            if c is None:
                c = self.chain_array(name)
            # the same expression tree is the same function: proved without the method
            # (SymPy builds sums and products in one canonical form, so a closed form that
            # is term for term the chain rule arrives here identical)
            if g[i] == c[i]:
                continue
            if not self._is_zero(g[i] - c[i]):
                raise AssertionError(
                    f"{self.op}: d{name}{list(i)} closed form {g[i]} != chain rule {c[i]}"
                )

    # -- numbers -------------------------------------------------------------------
    def _symbols(self):
        syms = []
        for k in sorted(self._inputs):
            syms.append((k, self._inputs[k]))
        if any(isinstance(s, sp.Symbol) for s in self._upstream.reshape(-1)):
            syms.append(("upstream", self._upstream))
        return syms

    def lambdify(self, name: str | None = None) -> Callable[..., np.ndarray]:
        """A NumPy function of keyword arrays named like ``inputs`` (plus ``upstream`` when the
        output is not a scalar loss) returning the closed-form gradient of ``name`` (or the
        forward output when ``name`` is None), with common subexpressions eliminated.

        """
        key = ("lambdify", name)
        if key in self._cache:  # building the function is the slow part: once per derivation
            return self._cache[key]
        exprs = self._output if name is None else self.grad_array(name)
        if self.constants:
            exprs = np.vectorize(lambda e: e.xreplace(self.constants), otypes=[object])(exprs)
        groups = self._symbols()
        flat_syms = [list(a.reshape(-1)) for _, a in groups]
        from .functions import NUMPY

        f = sp.lambdify(flat_syms, list(exprs.reshape(-1)), modules=[NUMPY, "numpy"], cse=True)
        names = [k for k, _ in groups]
        shapes = {k: a.shape for k, a in groups}
        out_shape = exprs.shape

        def fn(**arrays):
            missing = set(names) - set(arrays)
            if missing:
                raise TypeError(f"{self.op} gradient function needs arrays {sorted(missing)}")
            args = []
            for k in names:
                a = np.asarray(arrays[k], dtype=np.float64)
                if a.shape != shapes[k]:
                    raise ValueError(f"{self.op}: {k} must have shape {shapes[k]}, got {a.shape}")
                args.append(list(a.reshape(-1)))
            return np.array(f(*args), dtype=np.float64).reshape(out_shape)

        fn.argnames = names  # type: ignore[attr-defined]
        self._cache[key] = fn
        return fn

    def latex(self, **kw: Any) -> str:
        """The worked solution as a LaTeX document (``standalone=False``: a fragment)."""
        return _document_face()(self, "latex", **kw)

    def _repr_mimebundle_(self, include=None, exclude=None):
        """Jupyter shows a derivation as its worked solution: HTML with MathML (the notebook's
        choice), the LaTeX fragment, Markdown with ``$``-math, and Unicode text."""
        render = _document_face()
        return {
            "text/html": render(self, "html", standalone=False),
            "text/latex": render(self, "latex", standalone=False),
            "text/markdown": render(self, "markdown"),
            "text/plain": render(self, "text"),
        }

    def __repr__(self):
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self._inputs.items())
        out = tuple(self._output.shape)
        return f"<Derivation {self.op} {self.params} inputs {shapes} -> output {out}>"
