r"""The index notation of :func:`derivgrad.define`, parsed into statements.

One statement a line (blank lines and ``#`` comments are skipped)::

    T[i, j, ...]  = expression      # elementwise: every index on the right is on the left
    T[i, j, ...] += expression      # sums over the indices on the right and not on the left
    T[i, ...] max= expression       # the largest value over those indices (min=: the least)
    L[] += expression               # a scalar: sums over every index on the right

``max=`` and ``min=`` reduce over the same indices as ``+=``; of equal values the first in
row-major order of the reduced indices wins (their order: as they first appear on the right,
left to right), which is the rule the built-in max pooling follows, and the gradient flows to
that one entry only.

The expression is built from numbers, ``+ - * / **``, the functions ``exp log sqrt tanh sigmoid
erf abs sin cos``, ``max(a, b)`` and ``min(a, b)`` (ties go to the first argument), ``pow(a,
b)`` (the same as ``a ** b``: real where ``a > 0``, or where ``b`` is an integer constant;
elsewhere a numeric instance ends in one line, :mod:`~derivgrad.notation.domain`), ``len(d)``
(the extent of index ``d``) and tensor reads ``x[e_1, ..., e_r]`` whose subscripts are affine
in the indices with integer coefficients (``2*i + u``, ``i - u``, ``i + 2*u``), and in their
integer divisions and remainders by positive integer constants (``i // 2``, ``(i + u) % 3``,
``c*4 + (i % 2)*2 + j % 2``: :class:`Div`; rounded down, the remainder in ``[0, k)``).  A read
written ``(x[e_1, ..., e_r] ?? 0)`` is 0 where a subscript falls outside ``x``'s shape (zero
padding, :mod:`~derivgrad.notation.program` says how its indices' ranges follow); in such a
read ``e / k`` is an exact division, the read being 0 where ``k`` does not divide ``e`` (a
strided transposed convolution, ``(x[(i - u) / 2] ?? 0)``). The left side's
subscripts are plain, distinct index names, or none (``L[]``, a scalar: inside, a 1-entry
tensor over ``SCALAR_INDEX``; outside, ``op.forward`` returns a 0-d array and ``op.backward``
takes one). Each line is parsed by Python's own parser (:mod:`ast`), so positions are exact;
every malformed statement raises a one-line :class:`~derivgrad.errors.ParamError` (a
``ValueError``) naming the statement, its column and what is wrong, and so does one that no
face could compute in bounded time: a constant exponent past ``MAX_POWER`` (multiplied along
nested powers), exponentials nested past ``MAX_EXP_DEPTH``, a subscript coefficient or offset
past ``MAX_SUBSCRIPT``, a constant that is no finite float64, a division by a constant zero;
a subscript divided by zero, by a negative or float constant, by an index or a tensor value
is refused in one line too, and so is an exact division outside a padded read.
Any identifier may name a tensor or an index (the generated code keeps them apart from its
own names by construction, :mod:`derivgrad.notation.codegen`).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ParamError

FUNCTIONS = (
    "exp",
    "log",
    "sqrt",
    "tanh",
    "sigmoid",
    "erf",
    "abs",
    "sin",
    "cos",
    "max",
    "min",
    "pow",
)
# how many arguments each function takes (the others take one)
ARITY = {"max": 2, "min": 2, "pow": 2}

# Bounds that keep every face's work finite and exact arithmetic small, checked before any
# work (each is far past what a layer uses):
# - a subscript's coefficients and offset: an index into an axis of at most 2**31 entries
#   (past int64 the kernels could not even be typed; 10**23 overflowed in NumPy);
MAX_SUBSCRIPT = 2**31
# - a constant exponent, multiplied along nested powers ((x**a)**b is x**(a*b)): exact
#   values of x**1000000000 at x = 3 took minutes (a number of 477 million digits);
MAX_POWER = 1000
# - exponentials (exp, sigmoid, a power with a non-constant exponent) nested at most twice:
#   exp(exp(exp(10))) has about 10**9565 digits, past any exact or float evaluation.
MAX_EXP_DEPTH = 2
_EXPONENTIAL = ("exp", "sigmoid")


# A scalar output ``L[] += ...`` is a 1-entry tensor with this index on the left, of range
# [0, 1) in every face: no user index can be named so (Python reads ``None`` as a constant).
SCALAR_INDEX = "None"
_SCALAR_LHS = re.compile(r"\s*[A-Za-z_]\w*\s*\[\s*\]")
# ``T[...] max= E`` / ``min=``: read by Python as ``T[...] +=   E`` (the same width, so every
# column of an error is the column of the text as written), with the reduction kept apart
_REDUCE = re.compile(r"(\s*[A-Za-z_]\w*\s*\[[^\]]*\]\s*)(max|min)=")
REDUCTIONS = ("sum", "max", "min")


class DefineError(ParamError):
    """A malformed definition: one line naming the statement and the column."""


@dataclass(frozen=True)
class Div:
    """``inner // k``, ``inner % k`` or ``inner / k`` (exact: a whole position only where
    ``k`` divides ``inner``, allowed in a padded read, 0 elsewhere) for a constant ``k >= 2``."""

    kind: str  # "//", "%" or "/"
    inner: Affine
    k: int

    def text(self) -> str:
        inner = self.inner.text()
        plain = len(self.inner.coef) + len(self.inner.atoms) + (self.inner.const != 0) <= 1
        return f"{inner if plain and inner[0] != '-' else f'({inner})'} {self.kind} {self.k}"


@dataclass(frozen=True)
class Affine:
    """``Σ coef[t] · t + Σ c · atom + const`` over index names ``t`` (a subscript); the atoms
    (:class:`Div`) are integer divisions and remainders of affine subscripts."""

    coef: tuple[tuple[str, int], ...]
    const: int
    atoms: tuple[tuple[Div, int], ...] = ()

    def indices(self) -> tuple[str, ...]:
        out = [t for t, _ in self.coef]
        for d, _ in self.atoms:
            out += [t for t in d.inner.indices() if t not in out]
        return tuple(out)

    def bare(self) -> str | None:
        """The index name when the subscript is exactly one index, else ``None``."""
        if self.const == 0 and len(self.coef) == 1 and self.coef[0][1] == 1 and not self.atoms:
            return self.coef[0][0]
        return None

    def text(self) -> str:
        parts = []
        for t, c in self.coef:
            term = t if abs(c) == 1 else f"{abs(c)}*{t}"
            parts.append(("- " if c < 0 else "+ ") + term)
        for d, c in self.atoms:
            term = d.text() if abs(c) == 1 else f"{abs(c)}*({d.text()})"
            parts.append(("- " if c < 0 else "+ ") + term)
        if self.const or not parts:
            parts.append(("- " if self.const < 0 else "+ ") + str(abs(self.const)))
        s = " ".join(parts)
        return s[2:] if s.startswith("+ ") else "-" + s[2:]


# expression nodes: tuples, so that they hash and compare by value
#   ("num", float) | ("ref", tensor, (Affine, ...)) | ("len", index) | ("neg", e)
#   ("add"|"sub"|"mul"|"div"|"pow", a, b) | ("call", fname, (args...))
Expr = tuple


@dataclass
class Statement:
    number: int  # 1-based, counting statements (not blank lines)
    text: str  # the line as written, stripped
    target: str
    lhs: tuple[str, ...]
    accumulate: bool  # "+=" (sum over the right's extra indices) or "=" (elementwise)
    rhs: Expr
    refs: list[tuple[str, tuple[Affine, ...], int]] = field(default_factory=list)  # + column
    indices: tuple[str, ...] = ()  # lhs first, then the summed ones in order of appearance
    len_indices: set[str] = field(default_factory=set)
    scalar: bool = False  # the left side is ``T[]``: read as ``T[None]`` (``SCALAR_INDEX``)
    code: str = ""  # the text Python parses (``text`` but for a scalar's ``[None]``)
    # the terms of a '+=' statement's sum that read no summed index, as written: each is added
    # once per point of the summed indices (``+ b[o]`` in a matrix product), a silent trap
    constant_terms: list[str] = field(default_factory=list)
    # what an accumulating statement does over its summed indices: "sum" (``+=``), "max"
    # (``max=``) or "min" (``min=``): the first extreme in row-major order of ``summed``
    reduce: str = "sum"
    # positions in ``refs`` of the reads written ``x[...] ?? 0``: 0 outside ``x``'s shape
    padded: set[int] = field(default_factory=set)

    def error(self, col: int, message: str) -> DefineError:
        if self.scalar and col > self.text.index("["):  # a column of ``code``, past "None"
            col = max(col - len(SCALAR_INDEX), self.text.index("]"))
        return DefineError(f"statement {self.number} ({self.text!r}), column {col + 1}: {message}")

    @property
    def summed(self) -> tuple[str, ...]:
        return tuple(t for t in self.indices if t not in self.lhs)


def _col(node: ast.AST) -> int:
    return getattr(node, "col_offset", 0)


def _affine(st: Statement, node: ast.AST) -> dict[str, int] | int:
    """A subscript as ``{index: coef, "": const}``."""
    if isinstance(node, ast.Name):
        return {node.id: 1, "": 0}
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return {"": node.value}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        a = _affine(st, node.operand)
        s = -1 if isinstance(node.op, ast.USub) else 1
        return {k: s * v for k, v in a.items()}  # type: ignore[union-attr]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        a, b = _affine(st, node.left), _affine(st, node.right)
        s = 1 if isinstance(node.op, ast.Add) else -1
        out = dict(a)  # type: ignore[arg-type]
        for k, v in b.items():  # type: ignore[union-attr]
            out[k] = out.get(k, 0) + s * v
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        a, b = _affine(st, node.left), _affine(st, node.right)
        for c, e in ((a, b), (b, a)):
            if set(c) == {""}:  # type: ignore[arg-type]
                k = c[""]  # type: ignore[index]
                return {t: k * v for t, v in e.items()}  # type: ignore[union-attr]
    if isinstance(node, ast.BinOp) and type(node.op) in _DIVS:
        return _division(st, node)
    raise st.error(
        _col(node),
        f"subscript {ast.unparse(node)!r} is not affine in the indices "
        "(use index names, integers, +, - and integer multiples such as 2*i + u, and "
        "// or % by a positive integer such as i // 2)",
    )


_DIVS = {ast.FloorDiv: "//", ast.Mod: "%", ast.Div: "/"}


def _division(st: Statement, node: ast.BinOp) -> dict:
    """``e // k``, ``e % k`` or ``e / k`` in a subscript, ``k`` a positive integer constant."""
    kind = _DIVS[type(node.op)]
    what = f"subscript {_src(st, node)!r}"
    right = node.right
    if any(isinstance(n, ast.Subscript) for n in ast.walk(right)):
        raise st.error(
            _col(right),
            f"{what} divides by a tensor value: a subscript is an integer position made of "
            f"indices and integer constants, so '{kind}' takes a positive integer constant, "
            "as in i // 2",
        )
    if any(isinstance(n, ast.Constant) and type(n.value) is float for n in ast.walk(node)):
        raise st.error(
            _col(node),
            f"{what} holds a float constant: a subscript is an integer position, so '{kind}' "
            "takes a positive integer constant, as in i // 2",
        )
    k: Any = _affine(st, right)
    if set(k) != {""}:
        raise st.error(
            _col(right),
            f"{what} divides by an index: '{kind}' takes a positive integer constant, as in "
            "i // 2 (a division by an index is no affine position the gradient can solve)",
        )
    kv = k[""]
    if kv == 0:
        raise st.error(_col(node), f"{what} divides by zero")
    if kv < 0:
        raise st.error(
            _col(right),
            f"{what} divides by the negative {kv}: '{kind}' takes a positive integer "
            f"constant (write -(e // {-kv}) or (-e) // {-kv} for the sign you mean)",
        )
    if kv > MAX_SUBSCRIPT:
        raise st.error(_col(node), f"{what}: the divisor {kv} is past 2**31")
    inner = _to_affine(st, node.left)
    if kv == 1:
        return {"": 0} if kind == "%" else _as_dict(inner)
    if not inner.coef and not inner.atoms:  # a constant: folded
        if kind == "/" and inner.const % kv:
            raise st.error(_col(node), f"{what} is not a whole number")
        return {"": inner.const % kv if kind == "%" else inner.const // kv}
    return {Div(kind, inner, kv): 1, "": 0}


def _as_dict(a: Affine) -> dict:
    out: dict = {t: c for t, c in a.coef}
    out.update({d: c for d, c in a.atoms})
    out[""] = a.const
    return out


def _to_affine(st: Statement, node: ast.AST) -> Affine:
    a = _affine(st, node)
    coef = tuple(
        (t, c)
        for t, c in a.items()  # type: ignore[union-attr]
        if isinstance(t, str) and t and c != 0
    )
    atoms = tuple(
        (d, c)
        for d, c in a.items()  # type: ignore[union-attr]
        if isinstance(d, Div) and c != 0
    )
    const = a.get("", 0)  # type: ignore[union-attr]
    named = [*((f"the coefficient of {t}", c) for t, c in coef)]
    named += [(f"the coefficient of {d.text()}", c) for d, c in atoms]
    for what, c in [*named, ("the offset", const)]:
        if abs(c) > MAX_SUBSCRIPT:
            raise st.error(
                _col(node),
                f"subscript {ast.unparse(node)!r}: {what}, {c}, is past the largest an "
                f"array axis allows here (2**31)",
            )
    return Affine(coef, const, atoms)


def _subscripts(node: ast.Subscript) -> list[ast.AST]:
    s = node.slice
    return list(s.elts) if isinstance(s, ast.Tuple) else [s]


_BIN = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}


def _src(st: Statement, node: ast.AST) -> str:
    """``node``'s text as the user wrote it (a padded read's ``??``, not the ``or`` Python
    read: ``or`` as a word can only be that, since a literal one is refused)."""
    src = ast.get_source_segment(st.code, node) or ast.unparse(node)
    return re.sub(r"\bor\b", "??", src)


def _const(st: Statement, node: ast.AST) -> float | None:
    """The value of a constant subexpression (numbers and arithmetic only), else ``None``;
    a constant that is not a finite real number is an error."""
    v: Any = None
    try:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            v = float(node.value)  # type: ignore[arg-type]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            a = _const(st, node.operand)
            if a is None:
                return None
            v = -a if isinstance(node.op, ast.USub) else a
        elif isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            a, b = _const(st, node.left), _const(st, node.right)
            if a is None or b is None:
                return None
            if isinstance(node.op, ast.Div) and b == 0:
                raise st.error(_col(node), f"{_src(st, node)!r} divides by zero")
            v = {"add": a + b, "sub": a - b, "mul": a * b}.get(_BIN[type(node.op)])
            if isinstance(node.op, ast.Div):
                v = a / b
            elif isinstance(node.op, ast.Pow):
                if a == 0 and b < 0:
                    raise st.error(_col(node), f"{_src(st, node)!r} divides by zero")
                v = a**b
        else:
            return None
    except OverflowError:
        v = math.inf
    if not (isinstance(v, float) and math.isfinite(v)):
        raise st.error(
            _col(node),
            f"the constant {_src(st, node)!r} is not a finite real number in float64",
        )
    return v


def _limits(st: Statement, node: ast.AST, power: float = 1.0, depth: int = 0) -> None:
    """Refuse what no face could compute in bounded time (see ``MAX_POWER``, ``MAX_EXP_DEPTH``):
    ``power`` is the product of the constant exponents around ``node``, ``depth`` the
    exponentials around it."""
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        _const(st, node)  # a constant subexpression must be a finite real (10**400 is not)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        if _const(st, node.right) == 0:
            raise st.error(_col(node), f"{_src(st, node)!r} divides by zero")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        p = _const(st, node.right)
        if p is None:
            depth += 1
        else:
            power *= max(abs(p), 1.0)
            if power > MAX_POWER:
                raise st.error(
                    _col(node),
                    f"{_src(st, node)!r}: an exponent past {MAX_POWER} in magnitude "
                    "(nested powers multiplied) is refused: exact values would have millions "
                    "of digits",
                )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in _EXPONENTIAL:
            depth += 1
    if depth > MAX_EXP_DEPTH:
        raise st.error(
            _col(node),
            f"{_src(st, node)!r}: exponentials (exp, sigmoid, a power with a variable "
            f"exponent) nested more than {MAX_EXP_DEPTH} deep are refused: their values are "
            "past float64 and exact arithmetic",
        )
    if isinstance(node, ast.Subscript):
        return  # a subscript is affine, checked on its own
    for child in ast.iter_child_nodes(node):
        _limits(st, child, power, depth)


def _expr(st: Statement, node: ast.AST) -> Expr:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return ("num", _const(st, node))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return ("neg", _expr(st, node.operand))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _expr(st, node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        return (_BIN[type(node.op)], _expr(st, node.left), _expr(st, node.right))
    if isinstance(node, ast.BoolOp):  # ``??`` (read by Python as ``or``): a padded read
        read, zero = (node.values + [None, None])[:2]
        if (
            len(node.values) != 2
            or not isinstance(read, ast.Subscript)
            or not (isinstance(zero, ast.Constant) and zero.value == 0)
            or isinstance(zero.value, bool)
        ):
            raise st.error(
                _col(node),
                "'??' takes one tensor read on its left and 0 on its right, as in "
                "(x[i + u - 1] ?? 0), which is x's entry inside its shape and 0 outside; in a "
                "longer expression put it in parentheses",
            )
        e = _read(st, read, padded=True)
        st.padded.add(len(st.refs) - 1)
        return ("pad", *e[1:])
    if isinstance(node, ast.Subscript):
        return _read(st, node, padded=False)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.FloorDiv, ast.Mod)):
        raise st.error(
            _col(node),
            f"{_src(st, node)!r}: '//' and '%' are integer division and remainder of "
            "subscripts (x[i // 2]); a value is divided with '/'",
        )
    if isinstance(node, ast.Call):
        fname = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        if node.keywords:
            raise st.error(_col(node), f"{fname}() takes no keyword arguments")
        if fname == "len":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
                raise st.error(_col(node), "len() takes one index name, as in len(d)")
            st.len_indices.add(node.args[0].id)
            return ("len", node.args[0].id)
        if fname not in FUNCTIONS:
            raise st.error(
                _col(node),
                f"unknown function {fname!r}; known: {', '.join(FUNCTIONS)} and len(index)",
            )
        want = ARITY.get(fname, 1)
        if len(node.args) != want:
            raise st.error(
                _col(node),
                f"{fname}() takes {want} argument{'s' * (want > 1)}, got {len(node.args)}",
            )
        if fname == "pow":  # rewritten to a ** b by _pow_to_power before this
            raise AssertionError("pow() reached the expression builder")
        return ("call", fname, tuple(_expr(st, a) for a in node.args))
    if isinstance(node, ast.Name):
        raise st.error(
            _col(node),
            f"{node.id!r} has no subscripts: read a tensor as {node.id}[...], "
            "and an index's extent as len(index)",
        )
    raise st.error(_col(node), f"{ast.unparse(node)!r} is not allowed in a definition")


def _read(st: Statement, node: ast.Subscript, padded: bool) -> Expr:
    if not isinstance(node.value, ast.Name):
        raise st.error(_col(node), f"{ast.unparse(node)!r}: only a tensor name takes [...]")
    subs = tuple(_to_affine(st, s) for s in _subscripts(node))
    if not padded:
        for s, a in zip(_subscripts(node), subs):
            if any(d.kind == "/" for d in divisions(a)):
                raise st.error(
                    _col(s),
                    f"subscript {_src(st, s)!r}: an exact division is a whole position only "
                    f"where it divides evenly; write the read ({_src(st, node)} ?? 0), which "
                    "is 0 at the other points, or use // to round down",
                )
    st.refs.append((node.value.id, subs, _col(node)))
    return ("ref", node.value.id, subs)


def divisions(a: Affine) -> list[Div]:
    """Every division atom of ``a``, nested ones too."""
    out = []
    for d, _ in a.atoms:
        out += [d, *divisions(d.inner)]
    return out


def _pow_to_power(st: Statement, node: ast.AST) -> ast.AST:
    """``pow(a, b)`` as ``a ** b`` (one meaning, so the bounds of ``_limits`` and every face
    see a power); other nodes unchanged."""

    class Rewrite(ast.NodeTransformer):
        def visit_Call(self, call: ast.Call) -> ast.AST:
            self.generic_visit(call)
            if isinstance(call.func, ast.Name) and call.func.id == "pow":
                if call.keywords or len(call.args) != 2:
                    raise st.error(_col(call), f"pow() takes 2 arguments, got {len(call.args)}")
                return ast.copy_location(ast.BinOp(call.args[0], ast.Pow(), call.args[1]), call)
            return call

    return Rewrite().visit(node)


def _terms(node: ast.AST) -> list[ast.AST]:
    """The additive terms of an expression (through ``+``, ``-`` and unary signs)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        return _terms(node.left) + _terms(node.right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _terms(node.operand)
    return [node]


def parse_statement(number: int, line: str) -> Statement:
    text = line.strip()
    st = Statement(number, text, "", (), False, ("num", 0.0), code=text)
    scalar = _SCALAR_LHS.match(text)
    if scalar:
        st.scalar = True
        st.code = text[: scalar.end() - 1] + SCALAR_INDEX + text[scalar.end() - 1 :]
    reduction = _REDUCE.match(st.code)
    if reduction:
        st.reduce = reduction.group(2)
        st.code = st.code[: reduction.start(2)] + "+=  " + st.code[reduction.end(2) + 1 :]
    word = re.search(r"\b(or|and|not)\b", st.code)
    if word:
        raise st.error(
            word.start(),
            f"{word.group(1)!r} is not part of the notation (a read that is 0 outside its "
            "tensor is written x[...] ?? 0)",
        )
    st.code = st.code.replace("??", "or")  # the same width: columns stay those of the text
    empty = re.search(r"\[\s*\]", st.code)
    if empty:
        raise st.error(
            empty.start(),
            "empty brackets are a scalar output, written only on the left ('L[] += ...'); "
            "a scalar is not read by later statements",
        )
    try:
        tree = ast.parse(st.code, mode="exec")
    except SyntaxError as e:
        raise st.error((e.offset or 1) - 1, f"syntax error ({e.msg})") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], (ast.Assign, ast.AugAssign)):
        raise st.error(
            0,
            "a statement is 'T[i, ...] = expression', 'T[i, ...] += expression', "
            "'T[i, ...] max= expression' or 'T[i, ...] min= expression'",
        )
    node = tree.body[0]
    target: ast.expr
    if isinstance(node, ast.AugAssign):
        if not isinstance(node.op, ast.Add):
            raise st.error(_col(node), "only '=', '+=', 'max=' and 'min=' are allowed")
        target, st.accumulate = node.target, True
    else:
        if len(node.targets) != 1:
            raise st.error(0, "one tensor on the left")
        target = node.targets[0]
    if not (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)):
        raise st.error(_col(target), "the left side must be a tensor with indices, as in y[i, j]")
    st.target = target.value.id
    lhs = []
    for s in _subscripts(target) if not st.scalar else []:
        if not isinstance(s, ast.Name):
            raise st.error(_col(s), f"left subscript {ast.unparse(s)!r} must be a plain index name")
        if s.id in lhs:
            raise st.error(_col(s), f"index {s.id!r} appears twice on the left")
        lhs.append(s.id)
    st.lhs = (SCALAR_INDEX,) if st.scalar else tuple(lhs)
    value = _pow_to_power(st, node.value)
    st.rhs = _expr(st, value)
    _limits(st, value)
    order = list(st.lhs)
    # a read's indices as written, left to right (an Affine keeps the indices of its
    # divisions after its other ones: x[u % 2 + v] reads u first, the order max= ties follow)
    written = {
        _col(n): sorted(
            (m for m in ast.walk(n.slice) if isinstance(m, ast.Name)), key=lambda m: _col(m)
        )
        for n in ast.walk(value)
        if isinstance(n, ast.Subscript)
    }
    for _, subs, col in st.refs:
        if any(a.atoms for a in subs):
            found = [m.id for m in written[col]]
        else:
            found = [t for a in subs for t in a.indices()]
        for t in found:
            if t not in order:
                order.append(t)
    st.indices = tuple(order)
    # every index on the left must be read on the right, else its range is undefined
    right = {t for _, subs, _ in st.refs for a in subs for t in a.indices()}
    for t in lhs:
        if t not in right:
            col = text.find(t, _col(target))
            raise st.error(col, f"index {t!r} on the left does not appear on the right")
    for t in st.len_indices - right:
        raise st.error(st.code.find(f"len({t}"), f"len({t}): index {t!r} is not read on the right")
    if st.reduce != "sum" and not st.summed:
        raise st.error(
            st.code.find("+=  "),
            f"'{st.reduce}=' takes the {st.reduce}imum over the indices on the right and not on "
            "the left, and every index here is on the left: use '=' for an elementwise "
            "statement",
        )
    if st.accumulate and st.summed and st.reduce == "sum":
        for term in _terms(value):
            # the indices of the term's reads (len(i) is a constant, the same at every i)
            names = {
                n.id
                for r in ast.walk(term)
                if isinstance(r, ast.Subscript)
                for n in ast.walk(r.slice)
                if isinstance(n, ast.Name)
            }
            if not names & set(st.summed):
                st.constant_terms.append(_src(st, term))
    if not st.accumulate:
        extra = [t for t in order if t not in st.lhs]
        if extra:
            col = max(st.code.find(extra[0], st.code.find("=")), 0)
            raise st.error(
                col,
                f"index {extra[0]!r} is on the right but not on the left: use '+=' to sum over it",
            )
    return st


def parse(spec: str) -> list[Statement]:
    """The statements of ``spec``; raises :class:`DefineError` for a malformed one."""
    if not isinstance(spec, str):
        raise DefineError(f"define: the definition must be a string, got {type(spec).__name__}")
    statements: list[Statement] = []
    for line in spec.splitlines():
        code = line.split("#", 1)[0]
        if code.strip():
            statements.append(parse_statement(len(statements) + 1, code))
    if not statements:
        raise DefineError("define: the definition has no statement")
    return statements
