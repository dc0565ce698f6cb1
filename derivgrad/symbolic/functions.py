r"""SymPy functions for the kinks, with the kernels' conventions built into their derivatives.

SymPy's own ``Max`` differentiates to ``Heaviside(x_i - Max(others))`` with
``Heaviside(0) = 1/2``, which splits a tie; the kernels route a tie to the first maximum and
take ``relu'(0) = 0``.  These functions state those rules once:

* ``Relu(z)``, with ``Relu'(z) = Step(z) = 1[z > 0]`` (0 at the kink);
* ``WindowMax(a_1, ..., a_K)``, the maximum of a window in row-major order, with
  ``∂/∂a_k = FirstMax(k, a_1, ..., a_K)``: 1 if ``a_k`` is the *first* maximum
  (``a_k > a_j`` for ``j < k`` and ``a_k >= a_j`` for ``j > k``), else 0.
"""

import functools
import itertools
from typing import Any

import numpy as np
import sympy as sp
from sympy.core.logic import fuzzy_and


class Step(sp.Function):
    r"""``1[z > 0]``: the derivative of ReLU, 0 at the kink."""

    nargs = 1

    @classmethod
    def eval(cls, z: sp.Expr) -> Any:
        if z.is_number:
            return sp.Integer(1) if z > 0 else sp.Integer(0)
        if z.is_positive:
            return sp.Integer(1)
        if z.is_nonpositive:
            return sp.Integer(0)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.Integer(0)  # almost everywhere

    def _latex(self, printer):
        return r"\mathbf{1}[%s > 0]" % printer._print(self.args[0])


class Relu(sp.Function):
    r"""``max(z, 0)``."""

    nargs = 1

    @classmethod
    def eval(cls, z: sp.Expr) -> Any:
        if z.is_number:
            return z if z > 0 else sp.Integer(0)
        if z.is_nonnegative:
            return z
        if z.is_nonpositive:
            return sp.Integer(0)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return Step(self.args[0])

    def _latex(self, printer):
        return r"\operatorname{relu}\left(%s\right)" % printer._print(self.args[0])


class FirstMax(sp.Function):
    r"""``FirstMax(k, a_1..a_K)`` = 1 if ``a_k`` (k 0-based) is the first maximum, else 0."""

    @classmethod
    def eval(cls, k: sp.Expr, *a: sp.Expr) -> Any:
        if all(v.is_number for v in a) and k.is_number:
            k = int(k)
            best = max(range(len(a)), key=lambda j: (a[j], -j))
            return sp.Integer(1) if best == k else sp.Integer(0)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.Integer(0)

    def _latex(self, printer):
        # the same comparisons as FirstMaxRule: "a_k = max(window)" would be wrong on a tie
        return FirstMaxRule(*self.args)._latex(printer)


class FirstMaxRule(sp.Function):
    r"""``FirstMaxRule(k, a_1..a_K)`` (k 0-based): the first-maximum rule written from
    comparisons, ``1[a_k > a_j for every j < k and a_k >= a_j for every j > k]``.

    The closed form of max pooling is stated with it, while the chain rule differentiates
    ``WindowMax`` into ``FirstMax`` (an arg-max): the two are different definitions, and
    :func:`first_max_rule_agrees` proves them equal, so the proof is not circular.  It prints
    as the rule itself, e.g. ``1[x_{2,1} > max(x_{1,1}, x_{1,2}), x_{2,1} >= x_{2,2}]``.
    """

    @classmethod
    def eval(cls, k: sp.Expr, *a: sp.Expr) -> Any:
        if len(a) == 1:
            return sp.Integer(1)
        if all(v.is_number for v in a) and k.is_number:
            return sp.Integer(int(_rule_holds(int(k), [float(v) for v in a])))

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.Integer(0)

    def _latex(self, printer):
        k = int(self.args[0])
        a = [printer._print(v) for v in self.args[1:]]
        conds = []
        if a[:k]:
            before = a[0] if k == 1 else r"\max(%s)" % ", ".join(a[:k])
            conds.append(f"{a[k]} > {before}")
        if a[k + 1 :]:
            after = a[k + 1] if len(a) - k == 2 else r"\max(%s)" % ", ".join(a[k + 1 :])
            conds.append(f"{a[k]} \\geq {after}")
        return r"\mathbf{1}\left[%s\right]" % r" \wedge ".join(conds)


def _rule_holds(k: int, a: list[float]) -> bool:
    return all(a[k] > a[j] for j in range(k)) and all(a[k] >= a[j] for j in range(k + 1, len(a)))


@functools.cache
def first_max_rule_agrees(k: int, size: int) -> bool:
    """Prove ``FirstMax(k, a) == FirstMaxRule(k, a)`` for every real window ``a`` of ``size``
    entries, by cases: both depend on ``a`` only through how each ``a_j`` compares with
    ``a_k`` (less, equal, greater), and every one of the ``3^(size-1)`` patterns is realised by
    ``a_k = 0`` and ``a_j`` in ``{-1, 0, 1}``, so checking those patterns checks all of them.
    ``FirstMax`` is evaluated by the arg-max that the ground truth (``lambdify``) runs."""
    for rest in itertools.product((-1.0, 0.0, 1.0), repeat=size - 1):
        a = list(rest[:k]) + [0.0] + list(rest[k:])
        if _first_max(k, *a) != float(_rule_holds(k, a)):
            return False
    return True


class LogSumExp(sp.Function):
    r"""``lse(z_1..z_k) = log Σ_j e^{z_j}``, evaluated the stable way, ``m + log Σ_j e^{z_j − m}``
    with ``m = max_j z_j`` (every exponent ≤ 0: no overflow at logits of ±1000).

    Its derivative is the one fact stated here, ``∂ lse / ∂z_k = e^{z_k − lse(z)}``;
    :func:`stable_forms_agree` proves it, and the max shift, against the plain
    ``log Σ e^{z_j}``.  Softmax is then ``p_i = e^{z_i − lse(z)}``, finite for any logits.
    """

    @classmethod
    def eval(cls, *z: sp.Expr) -> Any:
        if len(z) == 1:
            return z[0]

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.exp(self.args[argindex - 1] - self)

    def _eval_is_real(self):
        return all(a.is_real for a in self.args) or None

    def _eval_evalf(self, prec):
        # numbers (a numeric instance): the max shift, so that nothing overflows
        if all(a.is_number for a in self.args):
            m = max(self.args, key=lambda a: a.evalf(prec))
            return (m + sp.log(sp.Add(*[sp.exp(a - m) for a in self.args]))).evalf(prec)
        return None

    def _latex(self, printer):
        return r"\operatorname{lse}\left(%s\right)" % ", ".join(
            printer._print(a) for a in self.args
        )


def plain_form(e: Any) -> Any:
    """``e`` with every ``lse(z)`` written out as ``log Σ_j e^{z_j}`` (its definition; SymPy
    then folds ``e^{z_i − log S}`` into ``e^{z_i} / S``): the form proofs compare."""
    if not isinstance(e, sp.Basic) or not e.has(LogSumExp):
        return e
    return e.replace(
        lambda a: isinstance(a, LogSumExp),
        lambda a: sp.log(sp.Add(*[sp.exp(v) for v in a.args])),
    )


def stable_softmax(z: Any) -> np.ndarray:
    """``p_i = e^{z_i − lse(z)}`` for a sequence of expressions ``z`` (an object array)."""
    lse = LogSumExp(*z)
    return np.array([sp.exp(v - lse) for v in z], dtype=object)


@functools.cache
def stable_forms_agree(k: int) -> bool:
    """Prove, for ``k`` symbolic logits and a free real shift ``m``, that the stable forms equal
    the plain ones: ``m + log Σ e^{z_j − m} = log Σ e^{z_j}`` (any ``m``, so ``m = max z``
    too), ``∂ lse/∂z_j`` as :class:`LogSumExp` states it equals the derivative of
    ``log Σ e^{z_j}``, and ``e^{z_i − lse(z)} = e^{z_i} / Σ_j e^{z_j}``."""
    z = sp.symbols(f"z1:{k + 1}", real=True)
    m = sp.Symbol("m", real=True)
    plain = sp.log(sp.Add(*[sp.exp(v) for v in z]))
    shifted = m + sp.log(sp.Add(*[sp.exp(v - m) for v in z]))
    # exp of both sides: e^m Σ e^{z_j − m} = Σ e^{z_j} (log is injective)
    if sp.expand(sp.powsimp(sp.expand(sp.exp(shifted) - sp.exp(plain)))) != 0:
        return False
    lse = LogSumExp(*z)
    for v in z:
        stated = lse.diff(v).subs(lse, plain)
        if sp.simplify(stated - plain.diff(v)) != 0:
            return False
        if sp.simplify(sp.exp(v - lse).subs(lse, plain) - sp.exp(v) / sp.exp(plain)) != 0:
            return False
    return True


def _logsumexp(*z):
    a = np.array(z, dtype=float)
    m = np.max(a)
    return float(m + np.log(np.sum(np.exp(a - m))))


class WindowMax(sp.Function):
    r"""The maximum of a pooling window, entries in row-major order."""

    @classmethod
    def eval(cls, *a: sp.Expr) -> Any:
        if len(a) == 1:
            return a[0]
        if all(v.is_number for v in a):
            return max(a)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return FirstMax(sp.Integer(argindex - 1), *self.args)

    def _eval_is_real(self) -> bool | None:
        # the maximum of reals is real: without it SymPy differentiates abs(max(a, b)) through
        # re() and im() (found by the define fuzzer; the kernels' printer has neither)
        return fuzzy_and(a.is_real for a in self.args)

    def _latex(self, printer):
        return r"\max\left(%s\right)" % ", ".join(printer._print(a) for a in self.args)


def _first_max(k, *a):
    a = np.array(a, dtype=float)
    return float(int(np.argmax(a)) == int(k))


# NumPy implementations for lambdify (scalar arguments: derivations lambdify entry-wise)
NUMPY = {
    "Step": lambda z: np.greater(z, 0).astype(float),
    "Relu": lambda z: np.maximum(z, 0.0),
    "WindowMax": lambda *a: np.max(a),
    "FirstMax": _first_max,
    "LogSumExp": _logsumexp,
    "FirstMaxRule": lambda k, *a: float(_rule_holds(int(k), [float(v) for v in a])),
}
