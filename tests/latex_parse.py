"""A small parser for the LaTeX that derivgrad's renderer prints (symbols with subscripts,
sums, implicit products, fractions, powers, exponentials, the indicator and relu), written
independently of the renderer so that tests can read a document back and compare it with
the SymPy expressions it came from."""

import re

import sympy as sp

from derivgrad.symbolic.functions import FirstMax, FirstMaxRule, Relu, Step, WindowMax

TOKEN = re.compile(
    r"\s*(\\begin\{bmatrix\}|\\end\{bmatrix\}|\\left|\\right|\\Big|\\big|\\frac|\\mathbf\{1\}|"
    r"\\operatorname\{relu\}|\\max|\\sqrt|\\log|\\[A-Za-z]+|\d+\.\d+|\d+|[A-Za-z]|[{}()\[\]^_+\-,&=<>]|\\\\)"
)


def tokens(s):
    s = s.replace(r"\quad", " ").replace(r"\;", " ").replace(r"\,", " ")
    pos, out = 0, []
    while pos < len(s):
        if s[pos:].strip() == "":
            break
        m = TOKEN.match(s, pos)
        if not m:
            raise ValueError(f"cannot tokenise {s[pos : pos + 20]!r}")
        t = m.group(1)
        if t not in (r"\left", r"\right", r"\Big", r"\big"):
            out.append(t)
        pos = m.end()
    return out


class Parser:
    def __init__(self, s):
        self.t = tokens(s)
        self.i = 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want=None):
        t = self.peek()
        if want is not None and t != want:
            raise ValueError(f"expected {want!r}, got {t!r} at token {self.i} of {self.t}")
        self.i += 1
        return t

    def expr(self):
        terms = []
        sign = 1
        if self.peek() in ("+", "-"):
            sign = -1 if self.take() == "-" else 1
        terms.append(sign * self.product())
        while self.peek() in ("+", "-"):
            sign = -1 if self.take() == "-" else 1
            terms.append(sign * self.product())
        return sp.Add(*terms)

    def product(self):
        f = [self.power()]
        while self.peek() not in (
            None,
            "+",
            "-",
            ")",
            "}",
            "]",
            ",",
            "&",
            "\\\\",
            ">",
            "=",
            r"\geq",
            r"\wedge",
            r"\end{bmatrix}",
        ):
            f.append(self.power())
        return sp.Mul(*f)

    def group(self):
        self.take("{")
        e = self.expr()
        self.take("}")
        return e

    def power(self):
        b = self.atom()
        if self.peek() == "^":
            self.take()
            b = b ** self.group()
        return b

    def _name(self, base):
        name = base
        if self.peek() == "^" and self.t[self.i + 1] == "{" and self.t[self.i + 2] == "(":
            # W^{(1)}: part of the symbol's name
            self.i += 3
            k = self.take()
            self.take(")"), self.take("}")
            name += "^{(" + k + ")}"
        if self.peek() == "_":
            self.take()
            self.take("{")
            parts = []
            while self.peek() != "}":
                parts.append(self.take())
            self.take("}")
            name += "_{" + "".join(parts) + "}"
        return sp.Symbol(name)

    def atom(self):
        t = self.take()
        if t == "(":
            e = self.expr()
            self.take(")")
            return e
        if t == "{":
            e = self.expr()
            self.take("}")
            return e
        if re.fullmatch(r"\d+(\.\d+)?", t):
            return sp.Rational(t) if "." not in t else sp.Float(t)
        if t == r"\frac":
            return self.group() / self.group()
        if t == r"\sqrt":
            return sp.sqrt(self.group())
        if t == r"\mathbf{1}":
            self.take("[")
            e = self.expr()
            if self.peek() == "=":  # 1[a_k = max(a_1, ..., a_K)]
                self.take("=")
                self.take(r"\max")
                self.take("(")
                args = [self.expr()]
                while self.peek() == ",":
                    self.take()
                    args.append(self.expr())
                self.take(")")
                self.take("]")
                return FirstMax(sp.Integer(args.index(e)), *args)
            rel = self.take()
            rhs = self.expr()
            if rel == ">" and rhs == 0 and self.peek() == "]":
                self.take("]")
                return Step(e)
            # the first-maximum rule: 1[a_k > max(earlier) \wedge a_k \geq max(later)]
            sides = {rel: rhs}
            while self.peek() == r"\wedge":
                self.take()
                assert self.expr() == e
                rel = self.take()
                sides[rel] = self.expr()
            self.take("]")
            group = lambda v: list(v.args) if isinstance(v, WindowMax) else [v]
            before = group(sides[">"]) if ">" in sides else []
            after = group(sides[r"\geq"]) if r"\geq" in sides else []
            return FirstMaxRule(sp.Integer(len(before)), *before, e, *after)
        if t == r"\operatorname{relu}":
            self.take("(")
            e = self.expr()
            self.take(")")
            return Relu(e)
        if t == r"\max":
            self.take("(")
            args = [self.expr()]
            while self.peek() == ",":
                self.take()
                args.append(self.expr())
            self.take(")")
            return WindowMax(*args)
        if t == "e" and self.peek() == "^":
            self.take()
            return sp.exp(self.group())
        if t == r"\begin{bmatrix}":
            rows, row = [], [self.expr()]
            while self.peek() != r"\end{bmatrix}":
                sep = self.take()
                if sep == "\\\\":
                    rows.append(row)
                    row = []
                row.append(self.expr())
            self.take()
            rows.append(row)
            return sp.Matrix(rows)
        if t.startswith("\\") or re.fullmatch(r"[A-Za-z]", t):
            return self._name(t)
        raise ValueError(f"unexpected token {t!r}")


def parse(s):
    p = Parser(s)
    e = p.expr()
    if p.peek() is not None:
        raise ValueError(f"trailing tokens {p.t[p.i :]}")
    return e
