r"""SymPy functions for the kinks, with the kernels' conventions built into their derivatives.

SymPy's own ``Max`` differentiates to ``Heaviside(x_i - Max(others))`` with
``Heaviside(0) = 1/2``, which splits a tie; the kernels route a tie to the first maximum and
take ``relu'(0) = 0``.  These functions state those rules once:

* ``Relu(z)``, with ``Relu'(z) = Step(z) = 1[z > 0]`` (0 at the kink);
* ``WindowMax(a_1, ..., a_K)``, the maximum of a window in row-major order, with
  ``∂/∂a_k = FirstMax(k, a_1, ..., a_K)``: 1 if ``a_k`` is the *first* maximum
  (``a_k > a_j`` for ``j < k`` and ``a_k >= a_j`` for ``j > k``), else 0.
"""

import numpy as np
import sympy as sp


class Step(sp.Function):
    r"""``1[z > 0]``: the derivative of ReLU, 0 at the kink."""

    nargs = 1

    @classmethod
    def eval(cls, z):
        if z.is_number:
            return sp.Integer(1) if z > 0 else sp.Integer(0)
        if z.is_positive:
            return sp.Integer(1)
        if z.is_nonpositive:
            return sp.Integer(0)

    def fdiff(self, argindex=1):
        return sp.Integer(0)  # almost everywhere

    def _latex(self, printer):
        return r"\mathbf{1}[%s > 0]" % printer._print(self.args[0])


class Relu(sp.Function):
    r"""``max(z, 0)``."""

    nargs = 1

    @classmethod
    def eval(cls, z):
        if z.is_number:
            return z if z > 0 else sp.Integer(0)
        if z.is_nonnegative:
            return z
        if z.is_nonpositive:
            return sp.Integer(0)

    def fdiff(self, argindex=1):
        return Step(self.args[0])

    def _latex(self, printer):
        return r"\operatorname{relu}\left(%s\right)" % printer._print(self.args[0])


class FirstMax(sp.Function):
    r"""``FirstMax(k, a_1..a_K)`` = 1 if ``a_k`` (k 0-based) is the first maximum, else 0."""

    @classmethod
    def eval(cls, k, *a):
        if all(v.is_number for v in a) and k.is_number:
            k = int(k)
            best = max(range(len(a)), key=lambda j: (a[j], -j))
            return sp.Integer(1) if best == k else sp.Integer(0)

    def fdiff(self, argindex=1):
        return sp.Integer(0)

    def _latex(self, printer):
        # the whole window, so the reader knows which maximum; ties go to the first
        k = int(self.args[0])
        return r"\mathbf{1}\left[%s = \max\left(%s\right)\right]" % (
            printer._print(self.args[1 + k]),
            ", ".join(printer._print(a) for a in self.args[1:]),
        )


class WindowMax(sp.Function):
    r"""The maximum of a pooling window, entries in row-major order."""

    @classmethod
    def eval(cls, *a):
        if len(a) == 1:
            return a[0]
        if all(v.is_number for v in a):
            return max(a)

    def fdiff(self, argindex=1):
        return FirstMax(sp.Integer(argindex - 1), *self.args)

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
}
