"""The engine's fast paths against SymPy's own: products and sums built without SymPy's general
flatten are SymPy's canonical expressions, the exact rational zero test agrees with
``cancel``, and a proof still fails on a wrong closed form."""

import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from derivgrad.symbolic.proofs import Expand, Rational, _rational_zero
from derivgrad.symbolic.tensors import times, total

# names that sort in every way SymPy distinguishes: by length, by digits inside braces,
# capitals, Greek, and the same name with other assumptions (a longer content)
_NAMES = ["x", "w", "W", "x_{1,2}", "x_{1,10}", "x_{10,1}", r"\delta_{3}", "d", "w_{2}", "b"]
_ASSUMPTIONS = [{}, {"real": True}, {"positive": True}]
symbol = st.builds(
    lambda n, a: sp.Symbol(n, **a), st.sampled_from(_NAMES), st.sampled_from(_ASSUMPTIONS)
)


@settings(max_examples=200, deadline=None)
@given(symbol, symbol)
def test_times_is_sympys_product(a, b):
    fast, slow = times(a, b), a * b
    assert fast == slow and fast.args == slow.args and type(fast) is type(slow)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(symbol, symbol), min_size=0, max_size=12))
def test_total_is_sympys_sum(pairs):
    terms = [times(a, b) for a, b in pairs]
    fast, slow = total(terms), sp.Add(*terms)
    assert fast == slow and fast.args == slow.args and type(fast) is type(slow)


x, y, z = sp.symbols("x y z")
atom = st.sampled_from([x, y, z, sp.Integer(2), sp.Rational(-1, 3), sp.exp(x), sp.Function("f")(y)])


def _combine(children):
    return st.one_of(
        st.builds(lambda a, b: a + b, children, children),
        st.builds(lambda a, b: a * b, children, children),
        st.builds(lambda a: 1 / (a + 1), children),
        st.builds(lambda a, k: a**k, children, st.integers(-2, 3)),
    )


rational = st.recursive(atom, _combine, max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(rational, rational)
def test_rational_zero_agrees_with_cancel(a, b):
    for e in (a - b, a - sp.together(a), a * b - sp.expand(b * a)):
        try:
            truth = sp.cancel(e) == 0
        except ZeroDivisionError:
            continue
        got = _rational_zero(e)
        if got:  # sound: never "zero" for a non-zero function
            assert truth, e
        if got is not None and not e.has(sp.exp):
            # complete where the atoms are independent (e^{2x} and e^x are not: the proofs
            # write exponentials as powers of one symbol before asking)
            assert got == truth, e


def test_a_wrong_rule_still_fails_each_proof():
    """Planted: a closed form off by one term must not pass the fast paths."""
    a, b, c = sp.symbols("a b c")
    for proof in (Expand(), Rational()):
        assert proof.is_zero(total([times(a, b), times(b, c)]) - (a * b + b * c))
        assert not proof.is_zero(total([times(a, b), times(b, c)]) - (a * b + a * c))
    E = sp.exp(a)
    assert Rational().is_zero(E / (E + 1) - 1 + 1 / (E + 1))
    assert not Rational().is_zero(E / (E + 1) - 1 + 1 / (E + 2))
