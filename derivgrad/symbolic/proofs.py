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


class Proof:
    """A proof method.  ``name``: a short identifier (JSON's ``proof.method``); ``sentence``:
    LaTeX completing "derivgrad proved it symbolically by …"; ``lemmas``: facts proved first."""

    name: ClassVar[str]
    sentence: str = ""
    lemmas: Sequence[Lemma] = ()

    def is_zero(self, e: sp.Expr) -> bool:
        """Whether ``e`` is identically zero: the kinks' functions written in their plain form
        (the arg-max as comparisons), then :meth:`zero`."""
        if e == 0:
            return True
        f = _first_max_as_rule(plain_form(e))
        return f is not None and self.zero(f)

    def zero(self, e: sp.Expr) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<proof {self.name}>"


def _numerator_expands_to_zero(e: sp.Expr) -> bool:
    # over a common denominator, the numerator must expand to the zero polynomial (no GCDs
    # needed, unlike cancel(), which spent most of the LeNet proof in factor_terms)
    num, _ = sp.fraction(sp.together(e))
    return bool(sp.expand(num) == 0)


class Expand(Proof):
    """Polynomial identities: the difference expands to the zero polynomial."""

    name = "expand"
    sentence = "expanding the difference of the two to a polynomial that is identically zero"

    def __init__(self, lemmas: Sequence[Lemma] = ()) -> None:
        self.lemmas = tuple(lemmas)

    def zero(self, e: sp.Expr) -> bool:
        return bool(sp.expand(e) == 0)


class Rational(Proof):
    """Exponentials: each ``exp(c·a)`` becomes ``E_a**c`` for a positive symbol ``E_a`` per
    base exponent ``a`` (SymPy folds ``exp(a)·exp(a)`` into ``exp(2a)``, which must become
    ``E_a²`` for the numerator to cancel); the difference is then a rational function whose
    numerator over a common denominator expands to zero."""

    name = "rational"
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
