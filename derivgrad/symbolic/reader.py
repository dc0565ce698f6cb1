r"""The one reader of text that becomes SymPy: parsed by a grammar of its own, never evaluated.

Every expression derivgrad reads back (a JSON derivation's fields, a numeric instance's
``values`` strings, the command line's ``--value``) goes through :func:`read_expr`.  It
accepts exactly what derivgrad's writers print (SymPy's ``str``):

* numbers (``3``, ``1/2`` as ``1 / 2``, ``0.5``, ``1.0e-5``),
* names given by the caller (a file's own symbol table; nothing else is looked up),
* ``+ - * / **``, unary minus and plus, parentheses,
* calls of the functions in :data:`FUNCTIONS` (derivgrad's kink functions and the SymPy
  functions a derivation's expressions use) and the constants ``pi`` and ``E``.

No Python (``sympify``, ``eval``, ``ast``) sees the text: a string such as
``__import__('os').system(...)`` is a one-line error at ``(``, not a call.  Limits bound the
work before any SymPy object is built: the text's length, the nesting depth (a flat chain of
``+`` or ``*`` is not nesting: it is read in a loop and built as one n-ary ``Add``/``Mul``, so
a 200,000-factor product is no ``RecursionError``), a number's digits and a numeric
exponent's size (``2**10**9`` would be a billion-digit integer).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, NoReturn

import numpy as np
import sympy as sp

from ..errors import DataError, DerivgradError
from . import functions as _functions

MAX_LENGTH = 2_000_000  # characters in one expression (derivgrad's largest is ~10^5)
MAX_DEPTH = 100  # nested parentheses, calls, unary signs and powers
MAX_DIGITS = 400  # digits of one number literal
MAX_EXPONENT = 1000  # |n| of a numeric exponent over a numeric base (2**n is built exactly)
MAX_ARGS = 10_000  # arguments of one call

# what derivgrad's writers print: its own functions, and SymPy's that a derivation can hold
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "Relu": _functions.Relu,
    "Step": _functions.Step,
    "WindowMax": _functions.WindowMax,
    "FirstMax": _functions.FirstMax,
    "FirstMaxRule": _functions.FirstMaxRule,
    "LogSumExp": _functions.LogSumExp,
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "tanh": sp.tanh,
    "erf": sp.erf,
    "sin": sp.sin,
    "cos": sp.cos,
    "Abs": sp.Abs,
    "sign": sp.sign,
    "Max": sp.Max,
    "Min": sp.Min,
}
CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}
RESERVED = frozenset(FUNCTIONS) | frozenset(CONSTANTS)

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[^\W\d]\w*)"
    r"|(?P<op>\*\*|[-+*/(),]))"
)
_END = ""


class _Reader:
    def __init__(
        self,
        text: str,
        names: Mapping[str, sp.Expr],
        what: str,
        error: type[Exception],
        exact: bool = False,
    ) -> None:
        self.text, self.names, self.what, self.error = text, names, what, error
        self.exact = exact
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, column)
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                bad = text[pos:].lstrip()[:1]
                self.fail(f"unexpected {bad!r}", len(text) - len(text[pos:].lstrip()))
            kind = m.lastgroup or "op"
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.tokens.append(("end", _END, len(text)))
        self.i = 0
        self.depth = 0

    def fail(self, why: str, col: int | None = None) -> NoReturn:
        at = f" at column {col + 1}" if col is not None else ""
        shown = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        raise self.error(f"{self.what}: cannot read {shown!r}: {why}{at}")

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self, op: str) -> bool:
        kind, tok, _ = self.tokens[self.i]
        if kind == "op" and tok == op:
            self.i += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.take(op):
            kind, tok, col = self.peek()
            self.fail(f"expected {op!r}, found {tok or 'the end'!r}", col)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nested more than {MAX_DEPTH} deep", self.peek()[2])

    def whole(self) -> sp.Expr:
        e = self.sum()
        kind, tok, col = self.peek()
        if kind != "end":
            self.fail(f"unexpected {tok!r}", col)
        return e

    def sum(self) -> sp.Expr:
        terms = [self.product()]
        while True:
            if self.take("+"):
                terms.append(self.product())
            elif self.take("-"):
                terms.append(-self.product())
            else:
                break
        return terms[0] if len(terms) == 1 else sp.Add(*terms)

    def product(self) -> sp.Expr:
        # left to right, as Python would: a / b * c is (a / b) * c
        acc = [self.unary()]
        while True:
            if self.take("*"):
                acc.append(self.unary())
            elif self.take("/"):
                acc.append(sp.Pow(self.unary(), -1))
            else:
                break
        return acc[0] if len(acc) == 1 else sp.Mul(*acc)

    def unary(self) -> sp.Expr:
        if self.peek()[1] in ("-", "+") and self.peek()[0] == "op":
            sign = self.peek()[1]
            self.i += 1
            self.enter()
            e = self.unary()
            self.depth -= 1
            return -e if sign == "-" else e
        return self.power()

    def power(self) -> sp.Expr:
        base = self.atom()
        col = self.peek()[2]
        if not self.take("**"):
            return base
        self.enter()
        exponent = self.unary()  # right-associative, and 2**-1 as in Python
        self.depth -= 1
        if exponent.is_number and base.is_number:
            if not (exponent.is_Rational and abs(exponent) <= MAX_EXPONENT):
                self.fail(f"a numeric power needs an exponent within ±{MAX_EXPONENT}", col)
        elif exponent.is_Number and abs(exponent) > MAX_EXPONENT:
            self.fail(f"an exponent beyond ±{MAX_EXPONENT}", col)
        return sp.Pow(base, exponent)

    def atom(self) -> sp.Expr:
        kind, tok, col = self.peek()
        self.i += 1
        if kind == "num":
            if len(tok) > MAX_DIGITS:
                self.fail(f"a number of more than {MAX_DIGITS} characters", col)
            if re.fullmatch(r"[0-9]+", tok):
                return sp.Integer(int(tok))
            mantissa, _, power = tok.lower().partition("e")
            if power and abs(int(power)) > MAX_EXPONENT:
                self.fail(f"a power of ten beyond ±{MAX_EXPONENT}", col)
            if self.exact:  # "0.1" is one tenth, as written
                return sp.Rational(mantissa) * sp.Integer(10) ** int(power or 0)
            f = sp.Float(tok)
            if not f.is_finite:
                self.fail("a number that is not finite", col)
            return f
        if kind == "name":
            if self.peek()[1] == "(" and self.peek()[0] == "op":
                return self.call(tok, col)
            if tok in self.names:
                return self.names[tok]
            if tok in CONSTANTS:
                return CONSTANTS[tok]
            self.fail(f"unknown name {tok!r}", col)
        if kind == "op" and tok == "(":
            self.enter()
            e = self.sum()
            self.depth -= 1
            self.expect(")")
            return e
        self.fail(f"unexpected {tok or 'end'!r}", col)

    def call(self, fname: str, col: int) -> sp.Expr:
        f = FUNCTIONS.get(fname)
        if f is None:
            self.fail(f"unknown function {fname!r}", col)
        self.expect("(")
        self.enter()
        args = [self.sum()]
        while self.take(","):
            args.append(self.sum())
            if len(args) > MAX_ARGS:
                self.fail(f"more than {MAX_ARGS} arguments", col)
        self.depth -= 1
        self.expect(")")
        try:
            return f(*args)
        except DerivgradError:
            raise
        except (TypeError, ValueError, ArithmeticError) as e:
            self.fail(f"{fname}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", col)


def read_expr(
    text: Any,
    names: Mapping[str, sp.Expr] | None = None,
    *,
    what: str = "expression",
    error: type[Exception] = DataError,
    exact: bool = False,
) -> sp.Expr:
    """``text`` as a SymPy expression over ``names`` (identifier → SymPy object), or
    ``error`` (a one-line message naming ``what``).  Parsed, never evaluated.  ``exact``:
    decimals are read as the rationals they spell (``0.1`` → 1/10), not as floats."""
    if not isinstance(text, str):
        raise error(f"{what}: expected an expression string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise error(f"{what}: an expression of {len(text):,} characters (limit {MAX_LENGTH:,})")
    if not text.strip():
        raise error(f"{what}: empty expression")
    reader = _Reader(text, names or {}, what, error, exact)
    try:
        return reader.whole()
    except DerivgradError:
        raise
    except (TypeError, ValueError, ArithmeticError, RecursionError) as e:
        # SymPy refusing what the grammar allows (e.g. a function's argument count)
        raise error(f"{what}: cannot read {text[:60]!r}: {type(e).__name__}") from None


def read_number(
    text: str, *, what: str, error: type[Exception] = DataError, exact: bool = False
) -> sp.Expr:
    """A number written as text (``"3"``, ``"-1/2"``, ``"0.25"``, ``"sqrt(2)"``): exact where
    the text is; anything with a name other than ``pi``/``E`` is an error."""
    try:
        e = read_expr(text, {}, what=what, error=error, exact=exact)
    except DerivgradError as err:
        raise error(f"{err} (a number is expected)") from None
    if not e.is_number:
        raise error(f"{what}: {text!r} is not a number")
    return e


def as_expr(v: Any) -> sp.Expr:
    """An entry of a derivation's object arrays (a SymPy object or a number: Python's, NumPy's
    or a ``Fraction``) as SymPy, without reading any text."""
    if isinstance(v, sp.Basic):
        return v
    if isinstance(v, bool | np.bool_):
        return sp.true if v else sp.false
    if isinstance(v, numbers.Integral):
        return sp.Integer(int(v))
    if isinstance(v, Fraction):
        return sp.Rational(v.numerator, v.denominator)
    if isinstance(v, numbers.Real):
        return sp.Float(float(v))
    raise TypeError(f"not a SymPy object or a number: {type(v).__name__}")
