"""Worked solutions: every op renders in LaTeX, Markdown and text; standalone LaTeX
compiles with a real TeX engine; the printed closed forms, parsed back, equal the SymPy
results they came from (no golden files); bad parameters give one line and exit 2."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from latex_parse import parse

import derivgrad
from derivgrad.documents.document import abbreviate_array, has_upstream, indexed, tex_name
from derivgrad.documents.render import build, render, said_in_chain
from derivgrad.registry import OPS

# ops printed by the generic document (the network and batch norm write their own)
FAST = [n for n in OPS if OPS[n].document(OPS[n].build()) is None]
TEX = shutil.which("pdflatex")
needs_tex = pytest.mark.skipif(
    TEX is None, reason="no TeX engine (pdflatex) installed; .ci/run installs one"
)


@pytest.fixture(scope="module")
def derivations():
    return {n: OPS[n].build() for n in OPS}


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("fmt", ["latex", "markdown", "text"])
def test_every_op_renders(derivations, name, fmt):
    s = render(derivations[name], fmt)
    assert "Proof" in s and len(s) > 500
    if fmt == "latex":
        assert s.startswith(r"\documentclass") and s.rstrip().endswith(r"\end{document}")
        assert "align*" in s
    if fmt == "markdown":
        assert "$$" in s and r"\documentclass" not in s
    for artefact in (r"1 \cdot", "+ -", "^{1}", "+ - ", "nan", "zoo"):
        assert artefact not in s, artefact


def test_fragment_mode_has_no_preamble(derivations):
    s = render(derivations["conv2d"], "latex", standalone=False)
    assert r"\documentclass" not in s and r"\begin{document}" not in s and "align*" in s


@pytest.mark.parametrize("name", FAST)
def test_printed_closed_forms_parse_back_to_the_sympy_results(derivations, name):
    d = derivations[name]
    doc = build(d)
    heads = [i for i, (k, x) in enumerate(doc.blocks) if k == "h"]

    def section(title):
        start = next(i for i, (k, x) in enumerate(doc.blocks) if k == "h" and x[1] == title)
        end = next((i for i in heads if i > start), len(doc.blocks))
        return [frags for k, x in doc.blocks[start:end] if k == "eq" for _, frags in x]

    # a loss whose gradient is its local derivatives prints it once, under those
    from derivgrad.documents.numeric_steps import _said_locally

    said = [k for k in d.grad_names if not has_upstream(d) and _said_locally(d, k)]
    local = section("Local derivatives") if said else []
    closed = section("Closed form")
    # a gradient whose chain-rule sums are its closed form entry by entry is listed once
    rules = [x for k, x in doc.blocks if k == "p" and x.startswith("Rule for")]
    chain_rows = {
        lhs: frags
        for k, x in doc.blocks
        if k == "eq"
        for lhs, frags in x
        if lhs.startswith(r"\frac{\partial L}")
    }
    printed, expected = [], []
    for k in d.grad_names:
        g = abbreviate_array(d.grad_array(k), d.extra.get("print_as"))  # p_i printed for e^…
        rule = next(x for x in rules if x.startswith(f"Rule for ${tex_name(k)}$"))
        if rule.endswith("the sums of the chain rule above."):
            assert has_upstream(d) and said_in_chain(d, k)
            for idx in np.ndindex(*g.shape):
                lhs = r"\frac{\partial L}{\partial " + indexed(tex_name(k), idx) + "}"
                frags = chain_rows[lhs]  # an inner product ⟨J, δ⟩ = value: the value
                printed.append([" ".join(frags).split(r"\rangle =")[-1]])
                expected.append(g[idx])
            continue
        if k in said:
            printed.extend(local[: g.size])
            local = local[g.size :]
            expected.extend(g.reshape(-1))
            continue
        if g.ndim == 2 and g.size <= 36 and closed and r"\begin{bmatrix}" in closed[0][0]:
            printed.append(closed.pop(0))
            expected.append(sp.Matrix(g.tolist()))
        else:
            printed.extend(closed[: g.size])
            closed = closed[g.size :]
            expected.extend(g.reshape(-1))
    assert len(printed) >= min(len(expected), 16)
    for frags, e in zip(printed, expected):
        text = " ".join(frags).replace(r"\\ &\quad", " ")
        if "too long to print" in text:
            continue
        back = parse(text)
        if isinstance(e, sp.Matrix):
            assert back.shape == e.shape
            assert all(d._is_zero(a - b) for a, b in zip(back, e)), name
        else:
            assert d._is_zero(back - e), f"{name}: printed {text!r} is not {e}"


@needs_tex
@pytest.mark.parametrize("name", list(OPS))
def test_standalone_latex_compiles(derivations, name, tmp_path):
    from derivgrad.documents.render import compile_pdf

    overfull: list[str] = []
    pdf = compile_pdf(
        render(derivations[name], "latex"), tmp_path / f"{name}.pdf", overfull=overfull
    )
    assert pdf.stat().st_size > 5000
    assert overfull == [], f"{name}: lines past the margin: {overfull}"


@needs_tex
def test_the_worked_problems_document_compiles(tmp_path):
    from derivgrad.documents.render import compile_pdf
    from derivgrad.documents.worked import document

    overfull: list[str] = []
    pdf = compile_pdf(document("latex"), tmp_path / "wp.pdf", overfull=overfull)
    assert pdf.stat().st_size > 50000
    assert overfull == [], f"worked problems: lines past the margin: {overfull}"


@needs_tex
@pytest.mark.parametrize(
    "op, params",
    [
        ("softmax", dict(classes=10)),
        ("conv2d", dict(input=(5, 5), kernel=(2, 2), stride=2, padding=1, dilation=2)),
        ("maxpool2d", dict(input=(5, 5), kernel=3, stride=2, padding=1)),
        # convolution as a matrix: drawn in blocks, printed flat, abbreviated with ⋯
        ("conv2d", dict(input=(4, 4), kernel=(2, 2), stride=2, padding=1, bias=False)),
        ("conv2d", dict(input=(3, 4), kernel=(2, 2), padding=1)),
        ("conv2d", dict(channels=2, filters=2, batch=2)),
        ("conv1d", dict(input=14, kernel=3, padding=2, channels=3, filters=2, batch=2)),
    ],
)
def test_documents_the_review_named_have_no_overfull_box(op, params, tmp_path):
    from derivgrad.documents.render import compile_pdf

    d = derivgrad.derive(op, **params)
    overfull: list[str] = []
    compile_pdf(render(d, "latex"), tmp_path / "doc.pdf", overfull=overfull)
    assert overfull == [], f"{op} {params}: lines past the margin: {overfull}"


@pytest.mark.parametrize(
    "args,words",
    [
        (["conv2d", "--input", "3x3", "--kernel", "5x5"], ["does not fit"]),
        (["conv2d", "--stride", "0"], ["stride"]),
        (["nosuchop"], ["unknown op"]),
        (["conv2d", "--input", "3xq"], ["input"]),
    ],
)
def test_bad_derive_parameters_give_one_line_and_exit_2(args, words):
    r = subprocess.run(
        [sys.executable, "-m", "derivgrad", "derive", *args], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert all(w in r.stderr for w in words)


def test_derive_writes_a_file_and_markdown(tmp_path):
    out = tmp_path / "softmax.md"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "derivgrad",
            "derive",
            "softmax",
            "--classes",
            "3",
            "--format",
            "markdown",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_text().count("$$") >= 4


def test_pdf_without_a_tex_engine_says_how_to_get_one(tmp_path, monkeypatch):
    from derivgrad.documents.render import compile_pdf

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install texlive"):
        compile_pdf("x", tmp_path / "x.pdf")


def test_block_rows_leave_room_for_their_blocks():
    # a row gap of an array only deepens its strut: it must exceed the blocks' own depth, or
    # stacked blocks touch (the stride-2 Jacobian's 3×3 blocks did at 2.2ex)
    import re

    from derivgrad.documents.document import block_matrix, bmatrix

    for rows in (1, 2, 3, 5):
        block = bmatrix(np.array(sp.symbols(f"a:{rows * 2}"), dtype=object).reshape(rows, 2))
        tex = block_matrix([[block, block], [block, block], [block, block]])
        gaps = [float(g) for g in re.findall(r"\\\\\[([0-9.]+)ex\]", tex)]
        assert len(gaps) == 2 and all(g >= 1.4 * rows for g in gaps), (rows, gaps)


def test_a_common_factor_times_the_rest_is_the_matrix():
    # average pooling's Jacobian and gradient print 1/4 once: the product must be the matrix
    from derivgrad.documents.document import common_factor

    a, b = sp.symbols("a b")
    for m in (
        np.array([[a / 4, 0], [b / 4, a / 4]], dtype=object),
        np.array([[sp.Rational(1, 4), 0], [0, sp.Rational(1, 4)]], dtype=object),
        np.array([[a / 4, b / 2]], dtype=object),  # two coefficients: nothing factored
        np.array([[-a, b]], dtype=object),  # ±1: nothing factored
    ):
        c, rest = common_factor(m)
        assert all(sp.expand(c * r - e) == 0 for r, e in zip(rest.reshape(-1), m.reshape(-1)))
    assert common_factor(np.array([[a / 4, b / 2]], dtype=object))[0] == 1
    d = derivgrad.derive("avgpool2d", input=(4, 4), kernel=2, stride=2)
    c, rest = common_factor(d.grad_array("x"))
    assert c == sp.Rational(1, 4) and set(rest.reshape(-1)) <= set(d.upstream_array.reshape(-1))
