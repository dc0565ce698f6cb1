"""Read presentation MathML (as a browser's DOM holds it) back into SymPy, written
independently of derivgrad's converter, so that tests can check that the HTML page states the
same equations and numbers as the LaTeX: symbols with subscripts, sums, products (explicit
``·`` or implicit), fractions, powers, parentheses and matrices (``mtable``)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import sympy as sp

from derivgrad.symbolic.functions import FirstMax, FirstMaxRule, Relu, Step, WindowMax

MATHML_TAGS = {
    "math", "mrow", "mi", "mn", "mo", "msub", "msup", "msubsup", "mfrac", "mtable", "mtr",
    "mtd", "mspace", "mtext", "msqrt", "mover", "munder", "mstyle", "mpadded", "merror",
}  # fmt: skip
VOID = {"mspace", "meta", "br", "img", "link", "input", "hr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]):
        self.tag, self.attrs, self.children, self.text = tag, attrs, [], ""

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)

    def find_all(self, tag: str) -> list[Node]:
        out = [self] if self.tag == tag else []
        for c in self.children:
            out.extend(c.find_all(tag))
        return out


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        n = Node(tag, dict(attrs))
        self.stack[-1].children.append(n)
        if tag not in VOID:
            self.stack.append(n)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag):
        for k in range(len(self.stack) - 1, 0, -1):
            if self.stack[k].tag == tag:
                del self.stack[k:]
                return

    def handle_data(self, data):
        self.stack[-1].text += data


def tree(html: str) -> Node:
    b = _Builder()
    b.feed(html)
    return b.root


FUNCS = {"exp": sp.exp, "log": sp.log, "max": WindowMax, "relu": Relu}
# the names derivgrad's symbols have (LaTeX), for the letters a browser shows
GREEK = {"δ": r"\delta", "γ": r"\gamma", "β": r"\beta", "ϵ": r"\epsilon", "ε": r"\epsilon",
         "σ": r"\sigma", "μ": r"\mu"}  # fmt: skip


class _Reader:
    """MathML → a token list (numbers, symbols, operators) → SymPy, by precedence climbing."""

    def __init__(self):
        self.toks: list = []

    def walk(self, n: Node) -> None:
        t = n.tag
        if t in ("mi", "mn"):
            s = n.all_text().strip()
            if t == "mn":
                self.toks.append(("num", s))
            elif s in FUNCS:
                self.toks.append(("func", s))
            elif s:
                self.toks.append(("sym", GREEK.get(s, s)))
        elif t == "mo":
            s = n.all_text().strip()
            s = {"−": "-", "·": "*", "⋅": "*", "\u2062": "", "(": "(", ")": ")"}.get(s, s)
            if s in FUNCS:  # \max, \log are operators in MathML
                self.toks.append(("func", s))
            elif s:
                self.toks.append(("op", s))
        elif t == "msub":
            base, sub = n.children[0], n.children[1]
            name = GREEK.get(base.all_text().strip(), base.all_text().strip())
            idx = sub.all_text().replace(" ", "")
            self.toks.append(("sym", f"{name}_{{{idx}}}"))
        elif t == "msup" and n.children[0].all_text().strip() == "e":
            self.toks.extend([("func", "exp"), ("op", "(")])
            self.walk(n.children[1])
            self.toks.append(("op", ")"))
        elif t == "msup" and re.fullmatch(r"\(\d+\)", n.children[1].all_text().replace(" ", "")):
            # W^{(1)}: a layer's label, part of the symbol's name (as the LaTeX reader has it)
            base = n.children[0].all_text().strip()
            sup = n.children[1].all_text().replace(" ", "")
            self.toks.append(("sym", f"{GREEK.get(base, base)}^{{{sup}}}"))
        elif t == "msup":
            self.toks.append(("op", "("))
            self.walk(n.children[0])
            self.toks.append(("op", ")"))
            self.toks.append(("op", "^"))
            self.toks.append(("op", "("))
            self.walk(n.children[1])
            self.toks.append(("op", ")"))
        elif t == "mfrac":
            self.toks.append(("op", "("))
            self.walk(n.children[0])
            self.toks.extend([("op", ")"), ("op", "/"), ("op", "(")])
            self.walk(n.children[1])
            self.toks.append(("op", ")"))
        elif t == "mtable":
            rows = [
                [_Reader().read(td) for td in tr.children if td.tag == "mtd"]
                for tr in n.children
                if tr.tag == "mtr"
            ]
            self.toks.append(("val", sp.Matrix(rows)))
        elif t == "msubsup":
            base, sub, sup = (c.all_text().replace(" ", "") for c in n.children[:3])
            self.toks.append(("sym", f"{GREEK.get(base, base)}^{{{sup}}}_{{{sub}}}"))
        elif t == "mspace":
            return
        else:
            kids = n.children
            for k, c in enumerate(kids):
                # a matrix's brackets are its drawing, not an operator
                text = c.all_text().strip() if c.tag == "mo" else None
                if text == "[" and k + 1 < len(kids) and kids[k + 1].tag == "mtable":
                    continue
                if text == "]" and k and kids[k - 1].tag == "mtable":
                    continue
                self.walk(c)

    def read(self, n: Node) -> sp.Expr:
        self.walk(n)
        self.pos = 0
        e = self.expr()
        if self.pos != len(self.toks):
            raise ValueError(f"unread tokens {self.toks[self.pos :]}")
        return e

    def arguments(self) -> list:
        self.pos += 1  # "("
        args = [self.expr()]
        while self.peek() == ("op", ","):
            self.pos += 1
            args.append(self.expr())
        if self.peek() != ("op", ")"):
            raise ValueError(f"expected ) at {self.toks[self.pos :]}")
        self.pos += 1
        return args

    def indicator(self):
        """``1[z > 0]`` (Step) or ``1[a_k = max(a_1, ...)]`` (FirstMax)."""
        self.pos += 1  # "["
        e = self.expr()
        op = self.peek()
        self.pos += 1
        if op == ("op", ">") and self.toks[self.pos : self.pos + 2] == [("num", "0"), ("op", "]")]:
            self.pos += 1
            out = Step(e)
        elif op in (("op", ">"), ("op", "≥")):
            # the first-maximum rule: 1[a_k > max(earlier) ∧ a_k ≥ max(later)]
            sides = {op[1]: self.expr()}
            while self.peek() == ("op", "∧"):
                self.pos += 1
                if self.expr() != e:
                    raise ValueError("each condition of the rule compares the same entry")
                rel = self.peek()[1]
                self.pos += 1
                sides[rel] = self.expr()
            group = lambda v: list(v.args) if isinstance(v, WindowMax) else [v]  # noqa: E731
            before = group(sides[">"]) if ">" in sides else []
            after = group(sides["≥"]) if "≥" in sides else []
            out = FirstMaxRule(sp.Integer(len(before)), *before, e, *after)
        elif op == ("op", "=") and self.peek() == ("func", "max"):
            self.pos += 1
            args = self.arguments()
            out = FirstMax(sp.Integer(args.index(e)), *args)
        else:
            raise ValueError(f"unknown indicator {op}")
        if self.peek() != ("op", "]"):
            raise ValueError(f"expected ] at {self.toks[self.pos :]}")
        self.pos += 1
        return out

    def peek(self):
        return self.toks[self.pos] if self.pos < len(self.toks) else ("end", "")

    def expr(self):
        sign = 1
        if self.peek() == ("op", "-"):
            self.pos += 1
            sign = -1
        e = sign * self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.toks[self.pos][1]
            self.pos += 1
            t = self.term()
            e = e + t if op == "+" else e - t
        return e

    def term(self):
        e = self.power()
        while True:
            k = self.peek()
            if k in (("op", "*"), ("op", "/")):
                self.pos += 1
                rhs = self.power()
                e = e * rhs if k[1] == "*" else e / rhs
            elif k[0] in ("num", "sym", "func", "val") or k == ("op", "("):
                e = e * self.power()  # implicit product
            else:
                return e

    def power(self):
        base = self.atom()
        if self.peek() == ("op", "^"):
            self.pos += 1
            return base ** self.atom()
        return base

    def atom(self):
        kind, v = self.peek()
        self.pos += 1
        if kind == "num" and v == "1" and self.peek() == ("op", "["):
            return self.indicator()
        if kind == "num":
            return sp.Rational(v) if "." not in v else sp.Float(v)
        if kind == "sym":
            return sp.Symbol("e") if v == "e" else sp.Symbol(v)
        if kind == "val":
            return v
        if kind == "func" and self.peek() == ("op", "("):
            return FUNCS[v](*self.arguments())
        if kind == "func":
            return FUNCS[v](self.atom())
        if (kind, v) == ("op", "("):
            e = self.expr()
            if self.peek() != ("op", ")"):
                raise ValueError(f"expected ) at {self.toks[self.pos :]}")
            self.pos += 1
            return e
        if (kind, v) == ("op", "-"):
            return -self.power()
        raise ValueError(f"unexpected {kind} {v!r}")


def _exp(e: sp.Expr) -> sp.Expr:
    E = sp.Symbol("e")
    return e.replace(lambda x: x.is_Pow and x.base == E, lambda x: sp.exp(x.exp))


def read(node: Node) -> sp.Expr:
    """One MathML subtree as SymPy (``e^{a}`` as ``exp(a)``)."""
    return _exp(_Reader().read(node))


def read_chain(node: Node) -> list[sp.Expr]:
    """A chain ``a = b = c`` (the ``=`` at top level) as ``[a, b, c]``; a leading ``=`` (the
    right-hand cell of an aligned row) is dropped."""
    r = _Reader()
    r.walk(node)
    parts: list[list] = [[]]
    depth = 0
    for t in r.toks:
        if t[0] == "op" and t[1] in ("(", "["):
            depth += 1
        elif t[0] == "op" and t[1] in (")", "]"):
            depth -= 1
        if t == ("op", "=") and depth == 0:
            parts.append([])
        else:
            parts[-1].append(t)
    out = []
    for p in parts:
        if not p:
            continue
        q = _Reader()
        q.toks, q.pos = p, 0
        e = q.expr()
        if q.pos != len(p):
            raise ValueError(f"unread tokens {p[q.pos :]}")
        out.append(_exp(e))
    return out


__all__ = ["FirstMax", "Node", "Step", "read", "tree"]
