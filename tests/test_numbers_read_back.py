"""Every written-out numeric equation, read back from the rendered output of every format
(LaTeX, Markdown, text, HTML), adds up: its terms sum to the value it states.  The instances
are wide enough that sums of 6 to 16 terms wrap over several lines (a dropped term per line
is a wrong sum), and the text format's row labels of a matrix shown row by row name the
matrix's own rows (1-based, the last row after a gap named as such)."""

import ast
import operator
import re
import sys
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

import derivgrad
from derivgrad.documents.instance import attach, random_values
from derivgrad.documents.render import render

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from latex_parse import parse as parse_latex  # noqa: E402
from mathml_parse import _Reader, tree  # noqa: E402

INSTANCES = [
    # dW of a 5x5 input and a 2x2 filter: sums of 16 products, three lines each
    ("conv2d", dict(input=(5, 5), kernel=(2, 2), bias=False), 3),
    # y = Wx + b with 8 features: 9 terms
    ("linear", dict(features=8, outputs=2), 2),
    # decimals (printed to six digits): the same layer on numbers with three decimals
    ("linear", dict(features=7, outputs=3), -1),
]


@pytest.fixture(scope="module", params=INSTANCES, ids=lambda p: p[0])
def instance(request):
    op, params, seed = request.param
    d = derivgrad.derive(op, **params)
    values = random_values(d, abs(seed))
    if seed < 0:
        rng = np.random.default_rng(abs(seed))
        values = {k: np.round(rng.uniform(-2, 2, v.shape), 3) for k, v in values.items()}
    d = attach(d, values)
    d.verify()
    return d


def _close(parts):
    """All sides of ``a = b = c`` equal; six printed digits per number allow a rounding of
    half a unit in the sixth digit per term."""
    vals = [sp.sympify(p) for p in parts]
    scale = max(abs(float(v)) for v in vals) or 1.0
    return all(abs(float(v - vals[0])) <= 1e-5 * scale + 1e-12 for v in vals[1:])


# -- LaTeX and Markdown: align rows ------------------------------------------------------------
def _latex_rows(source):
    blocks = re.findall(r"\\begin\{align\*?\}(.*?)\\end\{align\*?\}", source, re.S)
    blocks += re.findall(r"\\begin\{aligned\}(.*?)\\end\{aligned\}", source, re.S)
    for b in blocks:
        for row in b.strip().split(" \\\\\n"):
            lhs, _, rhs = row.partition("&=")
            yield lhs.strip(), rhs.replace(r"\\ &\quad", " ")


def _latex_equations(source):
    """``(lhs, [side, side, ...], products in the first side)`` for every row whose sides
    all read as numbers."""
    out = []
    for lhs, rhs in _latex_rows(source):
        if r"\cdot" not in rhs and "=" not in rhs:
            continue
        try:
            sides = [parse_latex(s.replace(r"\cdot", " ")) for s in rhs.split(" = ")]
        except (ValueError, IndexError, TypeError, KeyError):
            continue
        if len(sides) > 1 and all(not getattr(s, "free_symbols", True) for s in sides):
            out.append((lhs, sides, rhs.split(" = ")[0].count(r"\cdot")))
    return out


# -- text ---------------------------------------------------------------------------------------
_SUP = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _arith(s):
    """A printed number expression (``2·(−3) + 0.5·10⁻⁵``) as an exact Fraction, read by
    Python's parser and walked here: only numbers, + − · and parentheses are accepted."""
    s = re.sub(r"·10([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)", lambda m: "e" + m.group(1).translate(_SUP), s)
    s = s.replace("·", "*").replace("−", "-")

    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return Fraction(repr(n.value)) if isinstance(n.value, float) else Fraction(n.value)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -ev(n.operand)
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        raise ValueError(f"not a number expression: {ast.dump(n)}")

    return ev(ast.parse(s, mode="eval"))


def _text_equations(text):
    lines = text.splitlines()
    out = []
    k = 0
    while k < len(lines):
        m = re.match(r"^  (\S[^=]*?) = (.*)$", lines[k])
        k += 1
        if not m:
            continue
        body = [m.group(2)]
        while k < len(lines) and re.match(r"^      [+=−\-]", lines[k]):
            body.append(lines[k].strip())
            k += 1
        joined = " ".join(body)
        try:
            sides = [_arith(s) for s in joined.split(" = ")]
        except (ValueError, SyntaxError):
            continue
        if len(sides) > 1:
            sides = [sp.Rational(v.numerator, v.denominator) for v in sides]
            out.append((m.group(1), sides, joined.split(" = ")[0].count("·")))
    return out


# -- HTML: MathML rows --------------------------------------------------------------------------
def _walk(n):
    yield n
    for c in n.children:
        if hasattr(c, "tag"):
            yield from _walk(c)


def _html_equations(html):
    rows = []
    for tr in (n for n in _walk(tree(html)) if n.tag == "mtr" and len(n.children) >= 2):
        left, right = _Reader(), _Reader()
        try:
            left.walk(tr.children[0])
            right.walk(tr.children[-1])
        except ValueError:  # an abbreviated matrix (⋮ ⋱): no arithmetic to read
            rows.append(([("sym", "?")], [("sym", "?")]))
            continue
        if left.toks:
            rows.append((left.toks, list(right.toks)))
        elif rows:
            rows[-1][1].extend(right.toks)  # a continuation line of the row above
    out = []
    for lhs, toks in rows:
        if any(t[0] == "sym" for t in toks) or not any(t == ("op", "=") for t in toks):
            continue
        parts, depth = [[]], 0
        for t in toks:
            depth += t in (("op", "("), ("op", "[")) or -(t in (("op", ")"), ("op", "]")))
            if t == ("op", "=") and depth == 0:
                parts.append([])
            else:
                parts[-1].append(t)
        parts = [p for p in parts if p]  # a leading "=" (the aligned row's cell) leaves one empty
        sides = []
        try:
            for p in parts:
                r = _Reader()
                r.toks, r.pos = p, 0
                sides.append(r.expr())
        except ValueError:
            continue  # an abbreviated matrix (⋮) or a row that is not arithmetic
        if len(sides) > 1:
            out.append((lhs, sides, parts[0].count(("op", "*"))))
    return out


READERS = {
    "latex": _latex_equations,
    "markdown": _latex_equations,
    "text": _text_equations,
    "html": _html_equations,
}


@pytest.mark.parametrize("fmt", list(READERS))
def test_every_numeric_equation_adds_up(instance, fmt):
    out = render(instance, fmt)
    eqs = READERS[fmt](out)
    assert len(eqs) >= 4, f"{instance.op} {fmt}: only {len(eqs)} numeric equations read back"
    wrong = [(lhs, sides) for lhs, sides, _ in eqs if not _close(sides)]
    assert not wrong, f"{instance.op} {fmt}: sums that do not add up: {wrong[:3]}"
    # the sums of 7 and more terms are among those read back, whole
    assert max(n for _, _, n in eqs) >= 7


def test_text_row_labels_name_the_matrix_rows():
    """A matrix too wide for 80 columns is printed row by row: row k's diagonal entry is
    p_k (1 − p_k) of the softmax Jacobian (diag(p) − p pᵀ), whole and abbreviated."""
    sub = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
    for classes in (6, 10):
        text = render(derivgrad.derive("softmax", classes=classes), "text")
        rows = re.findall(r"^    (row \d+|last row): \[(.*)\]$", text, re.M)
        assert rows, f"softmax {classes}: no matrix printed row by row"
        for label, body in rows[: classes if classes <= 6 else 5]:
            k = classes if label == "last row" else int(label.split()[1])
            p = f"p{str(k).translate(sub)}"
            assert f"{p} (1 − {p})" in body, f"softmax {classes}: {label} is not row {k}: {body}"
