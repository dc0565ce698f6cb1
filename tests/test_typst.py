"""Typst: every op's document and the worked problems compile to PDF with the ``typst``
package (no TeX), and the PDF's text, read back with pdftotext, holds the document's
headings and sentences; text is data (no markup or code of a title runs); ``--pdf`` uses
Typst where no pdflatex is installed.  Skips without the package (``pip install
'.[pdf]'``; .ci/run installs it)."""

import os
import re
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from derivgrad import formats
from derivgrad.documents.document import Doc, plain_text
from derivgrad.documents.render import build
from derivgrad.formats.typst import UnknownCommand, math
from derivgrad.registry import OPS

typst = pytest.importorskip("typst", reason="the typst package is not installed ('.[pdf]')")
PDFTOTEXT = shutil.which("pdftotext")
needs_pdftotext = pytest.mark.skipif(
    PDFTOTEXT is None, reason="no pdftotext (poppler-utils; .ci/run installs it)"
)
WRITER = formats.get("typst")


def _pdf_text(doc_source: str, tmp_path) -> str:
    pdf = WRITER.pdf(doc_source, tmp_path / "doc.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    out = subprocess.run(
        [PDFTOTEXT, "-raw", str(pdf), "-"], capture_output=True, text=True, check=True
    )
    return out.stdout


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _plain_runs(text: str) -> list[str]:
    """The parts of a prose block outside ``$...$`` and ``\\texttt``: printed as they are."""
    runs = []
    for k, part in enumerate(text.split("$")):
        if k % 2 == 0:
            runs.extend(plain_text(r) for r in re.split(r"\\texttt\{.*?\}", part))
    return [r for r in runs if len(r.strip()) >= 12]


def _check_text_survives(docs: list[Doc], text: str) -> None:
    # pdftotext joins a word hyphenated at a line's end ("1-" + "based" -> "1based")
    flat = _squash(text).replace("-", "")
    for doc in docs:
        for kind, x in doc.blocks:
            body = x[1] if kind == "h" else x if kind == "p" else None
            for run in _plain_runs(body) if body else []:
                assert _squash(run).replace("-", "") in flat, f"not in the PDF: {run!r}"


@needs_pdftotext
@pytest.mark.parametrize("name", list(OPS))
def test_every_op_compiles_and_reads_back(name, tmp_path):
    d = OPS[name].build()
    doc = build(d)
    text = _pdf_text(WRITER.document(doc), tmp_path)
    _check_text_survives([doc], text)
    assert "Proof" in text


@needs_pdftotext
def test_the_worked_problems_compile_and_read_back(tmp_path):
    from derivgrad.documents.worked import TITLE, document, documents

    docs = documents()
    text = _pdf_text(document("typst", docs), tmp_path)
    _check_text_survives(docs, text)
    assert TITLE in text and "Contents" in text
    # numbers: the notes' gradient check at (2, 1, 3), a matrix of numbers in a proof
    assert "1e-" in text or "e-1" in text
    heads = [x[1] for doc in docs for k, x in doc.blocks if k == "h" and x[0] == 1]
    assert all(_squash(h.split("$")[0]) in _squash(text) for h in heads)


ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="$\\"))
PROSE = st.text(
    st.one_of(st.characters(min_codepoint=32, max_codepoint=126), st.sampled_from("δ×−→é—…")),
    min_size=1,
    max_size=40,
).filter(lambda s: "$" not in s and "\\" not in s and s.strip())


@needs_pdftotext
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(title=PROSE, sentence=PROSE)
@example(title='#panic("ran") = x', sentence='#let x = 1 // not a comment */ "q"')
@example(title="1. first", sentence="- item *bold* _it_ <l> @r [c] ~ --- ... 'q'")
def test_text_is_data_never_markup(title, sentence, tmp_path):
    doc = Doc()
    doc.h(title)
    doc.p(sentence)
    doc.p("end")
    text = _pdf_text(WRITER.document(doc), tmp_path)
    # every character printed as given, in order (line breaks aside)
    assert _squash(title) + _squash(sentence) + "end" in _squash(text).replace("derivgrad", "")


def test_math_from_the_one_printer():
    assert math(r"\frac{\partial L}{\partial w_{1,1}}") == "frac(partial L, partial w_(1 \\, 1))"
    assert math(r"\sum_{i=1}^{12} x_{i}^{2}") == "sum_(i = 1)^(12) x_(i)^(2)"
    assert math(r"\begin{bmatrix} 1 & 0.5 \\ -3 & x \end{bmatrix}") == (
        'mat(delim: "[", 1, 0.5; - 3, x)'
    )
    assert math(r"\operatorname{rot180}(W)") == 'op("rot180") ( W )'
    with pytest.raises(UnknownCommand, match=r"\\weird"):
        math(r"x \weird y")


def _derive(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    here = os.getcwd()  # the worktree's own copy of derivgrad
    return subprocess.run(
        [sys.executable, "-m", "derivgrad", "derive", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or here,
    )


def test_pdf_without_tex_compiles_with_typst(tmp_path):
    # no pdflatex on PATH: --pdf falls to the extra's engine
    env = dict(os.environ, PATH=str(tmp_path))
    out = tmp_path / "relu.pdf"
    r = _derive("relu", "--pdf", "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    # only the PDF is written: the source is compiled in a temporary directory
    assert out.read_bytes().startswith(b"%PDF") and not (tmp_path / "relu.typ").exists()
    r = _derive("relu", "--pdf", "--engine", "typst", "--format", "latex", env=env)
    assert r.returncode == 2 and "compiles --format typst" in r.stderr
