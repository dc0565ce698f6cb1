r"""How :meth:`Derivation.verify` proves ``closed form == chain rule`` entry by entry: one
class per proof method, each carrying the data it needs and the sentence a document prints.

A proof method decides whether an expression (the difference of the two sides) is identically
zero.  Adding one is a subclass here (or beside the op that needs it) with :meth:`Proof.zero`
and :attr:`Proof.sentence`; the renderer prints the sentence and never names a method.

:class:`Lemma` s are facts the expressions rely on (the stable log-sum-exp equals the plain
form); ``verify`` proves each before the entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sympy as sp

from .functions import plain_form


@dataclass(frozen=True)
class Lemma:
    """A fact the derivation's expressions rely on, in words, and its proof (``True`` if it
    holds)."""

    statement: str
    proof: Callable[[], bool]


def _first_max_as_rule(e: sp.Expr) -> sp.Expr | None:
    """Max pooling: the chain rule's ``FirstMax`` (the arg-max, the derivative of the window
    maximum) replaced by the closed form's ``FirstMaxRule`` (written from comparisons) once the
    lemma that they agree is proved by cases for that window size; ``None`` if it fails."""
    from .functions import FirstMax, FirstMaxRule, first_max_rule_agrees

    subs = {}
    for a in e.atoms(FirstMax):
        if not first_max_rule_agrees(int(a.args[0]), len(a.args) - 1):
            return None
        subs[a] = FirstMaxRule(*a.args)
    return e.xreplace(subs) if subs else e


def odd_signs(e: sp.Expr) -> sp.Expr:
    """``e`` with ``sign(−a)`` written ``−sign(a)``: SymPy's ``sign`` keeps a negated argument
    as it comes, where its other odd and even functions (``Abs``, ``tanh``, ``sin``, ``erf``,
    ``cos``) take the sign out themselves, so ``|x − u|`` differentiated as a closed form
    (``δ·sign(x − u)``) and by the chain rule through ``|u − x|`` (``−δ·sign(u − x)``) would
    not cancel.  ``could_extract_minus_sign`` holds for exactly one of ``a`` and ``−a``: one
    canonical argument for both."""
    if not isinstance(e, sp.Basic) or not e.has(sp.sign):
        return e
    return e.replace(
        lambda a: isinstance(a, sp.sign) and a.args[0].could_extract_minus_sign(),
        lambda a: -sp.sign(-a.args[0]),
    )


class Proof:
    """A proof method.  ``name``: a short identifier (JSON's ``proof.method``); ``sentence``:
    LaTeX completing "derivgrad proved it symbolically by …"; ``lemmas``: facts proved first."""

    name: ClassVar[str]
    sentence: str = ""
    lemmas: Sequence[Lemma] = ()
    # whether a composition of derivations proved this way is proved by Rational (the whole
    # network as one expression, derivgrad.netdoc.composed): a method that substitutes
    # symbols for parts of its own expressions (Radical's radicands) does not carry over
    composes: ClassVar[bool] = False

    def is_zero(self, e: sp.Expr) -> bool:
        """Whether ``e`` is identically zero: the kinks' functions written in their plain form
        (the arg-max as comparisons), then :meth:`zero`."""
        if e == 0:
            return True
        e = odd_signs(e)
        if e == 0:
            return True
        # first with every function call (e^{z_i − lse z}, lse z, the arg-max) as an
        # independent variable: an identity in free variables holds for any of their values,
        # so True proves it (softmax's closed form and chain rule agree this way, without
        # writing out 40 exponentials in every p_i); False only means "not this way"
        if _rational_zero(e):
            return True
        f = _first_max_as_rule(plain_form(e))
        return f is not None and self.zero(f)

    def zero(self, e: sp.Expr) -> bool:
        raise NotImplementedError

    def sides(self, name: str) -> tuple[Any, Any] | None:
        """Two object arrays shaped like input ``name`` whose entrywise equality, proved by
        :meth:`is_zero`, implies that the closed form equals the chain rule (a structural
        proof: both written over named intermediate values, say), or ``None``: the closed
        form and the chain rule are compared themselves.  An entry the structural sides do
        not prove is compared the plain way, so a method may offer sides it cannot always
        prove equal."""
        return None

    def __repr__(self) -> str:
        return f"<proof {self.name}>"


# a denominator: {key: (base polynomial, exponent)}, the bases kept apart
Den = dict[Any, tuple[Any, int]]


class _NotRational(Exception):
    pass


def _generators(e: sp.Expr) -> list[sp.Expr] | None:
    """The atoms of ``e`` as a rational function: its symbols and any other function call
    (``Step(z)``), each an independent variable; ``None`` if ``e`` holds a power that is not
    an integer or a number that is not rational (then it is no rational function)."""
    found: dict[sp.Expr, None] = {}

    def walk(x: sp.Expr) -> None:
        if x.is_Number:
            if not x.is_Rational:
                raise _NotRational
        elif x.is_Add or x.is_Mul:
            for a in x.args:
                walk(a)
        elif x.is_Pow:
            if not x.exp.is_Integer:
                raise _NotRational
            walk(x.base)
        else:
            found.setdefault(x)

    try:
        walk(e)
    except _NotRational:
        return None
    return list(found)


def _rational_zero(e: sp.Expr) -> bool | None:
    """Whether the rational function ``e`` is identically zero, decided exactly: ``e`` is
    rebuilt as ``numerator / Π base^m`` in SymPy's sparse polynomials over ℚ (the
    denominator's bases kept apart, never multiplied out), each sum over the product of the
    largest powers of its terms' bases; ``e`` is zero iff the numerator is the zero
    polynomial (every base is a non-zero polynomial: one that is zero makes ``e`` undefined,
    and the answer is "not proved").  ``together`` + ``expand`` decide the same, but
    ``together`` looks for common factors term by term and took 20 of softmax(16)'s 27 s.
    ``None``: ``e`` is not a rational function of its atoms."""
    gens = _generators(e)
    if gens is None:
        return None
    if not gens:
        return bool(e == 0)
    index = {g: k for k, g in enumerate(gens)}
    R, *G = sp.ring([sp.Dummy() for _ in gens], sp.QQ)

    def conv(x: sp.Expr) -> tuple[Any, Den]:
        if x.is_Number:
            return R(sp.QQ(int(x.p), int(x.q))), {}
        if x.is_Add:
            parts = [conv(a) for a in x.args]
            den: Den = {}
            for _, D in parts:
                for k, (b, m) in D.items():
                    if k not in den or den[k][1] < m:
                        den[k] = (b, m)
            num = R.zero
            for n, D in parts:
                for k, (b, m) in den.items():
                    r = m - (D[k][1] if k in D else 0)
                    if r:
                        n = n * b**r
                num += n
            return num, den
        if x.is_Mul:
            num, den = R.one, {}
            for a in x.args:
                n, D = conv(a)
                num = num * n
                for k, (b, m) in D.items():
                    den[k] = (b, den[k][1] + m) if k in den else (b, m)
            return num, den
        if x.is_Pow:
            n, D = conv(x.base)
            q = int(x.exp)
            if q >= 0:
                return n**q, {k: (b, m * q) for k, (b, m) in D.items()}
            if not n:
                raise ZeroDivisionError
            num = R.one
            for b, m in D.values():
                num = num * b ** (-m * q)
            return num, {tuple(sorted(n.items())): (n, -q)}
        return G[index[x]], {}

    try:
        num, _ = conv(e)
    except ZeroDivisionError:
        return False
    return not num


def _numerator_expands_to_zero(e: sp.Expr) -> bool:
    """A rational function is zero iff its numerator over a common denominator is the zero
    polynomial."""
    fast = _rational_zero(e)
    if fast is not None:
        return fast
    # not a rational function of its atoms (a fractional power, a float): the same test
    # through SymPy's together (no GCDs needed, unlike cancel())
    num, _ = sp.fraction(sp.together(e))
    return bool(sp.expand(num) == 0)


class Expand(Proof):
    """Polynomial identities: the difference expands to the zero polynomial."""

    name = "expand"
    composes = True  # a polynomial identity is a rational one
    sentence = "expanding the difference of the two to a polynomial that is identically zero"

    def __init__(self, lemmas: Sequence[Lemma] = ()) -> None:
        self.lemmas = tuple(lemmas)

    def zero(self, e: sp.Expr) -> bool:
        fast = _rational_zero(e)
        return fast if fast is not None else bool(sp.expand(e) == 0)


class Rational(Proof):
    """Exponentials: each ``exp(c·a)`` becomes ``E_a**c`` for a positive symbol ``E_a`` per
    base exponent ``a`` (SymPy folds ``exp(a)·exp(a)`` into ``exp(2a)``, which must become
    ``E_a²`` for the numerator to cancel); the difference is then a rational function whose
    numerator over a common denominator expands to zero."""

    name = "rational"
    composes = True
    sentence = (
        r"writing every $e^{a}$ as a positive symbol and cancelling the difference, a "
        r"rational function, to zero"
    )

    def __init__(self, lemmas: Sequence[Lemma] = ()) -> None:
        self.lemmas = tuple(lemmas)

    def zero(self, e: sp.Expr) -> bool:
        bases: dict[Any, sp.Symbol] = {}
        subs = {}
        for atom in e.atoms(sp.exp):
            c, a = sp.factor_terms(atom.args[0]).as_coeff_Mul()
            E = bases.setdefault(a, sp.Symbol(f"E{len(bases)}", positive=True))
            subs[atom] = E**c
        return _numerator_expands_to_zero(e.xreplace(subs))


class Radical(Proof):
    r"""Square roots of declared radicands: each radicand ``B`` becomes ``S²`` for a positive
    symbol ``S`` (both sides use ``√B`` only as a number and differentiate ``B`` itself
    explicitly, so the identity must hold for any positive ``S``); then the numerator over a
    common denominator expands to zero.  ``radicand`` and ``differentiated`` name ``B`` and the
    part of it the chain rule differentiates, in LaTeX, for the sentence."""

    name = "radical"

    def __init__(
        self,
        radicands: Sequence[sp.Expr],
        *,
        radicand: str,
        differentiated: str,
        lemmas: Sequence[Lemma] = (),
    ) -> None:
        self.radicands = tuple(radicands)
        self.lemmas = tuple(lemmas)
        self.sentence = (
            rf"writing $\sqrt{{{radicand}}}$ as a positive symbol $S$ (the chain rule "
            rf"differentiates ${differentiated}$ explicitly) and expanding the numerator of the "
            r"difference to zero"
        )

    def zero(self, e: sp.Expr) -> bool:
        subs = {B: sp.Symbol(f"S{k}", positive=True) ** 2 for k, B in enumerate(self.radicands)}
        return _numerator_expands_to_zero(e.xreplace(subs))
