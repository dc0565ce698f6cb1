"""The one list of formats (derivgrad/formats/): every public module there is a format whose
writer visits every block kind of the document model; the renderer, worked-problems and the
command line all read the list, so a new module is a new format everywhere, with nothing
else edited."""

import subprocess
import sys
from pathlib import Path

import pytest

import derivgrad.formats as formats
from derivgrad.documents.document import Doc
from derivgrad.documents.render import FORMATS, render

BLOCK_KINDS = {"h", "p", "eq"}  # what Doc's h(), p(), eq() append


def _kinds_of_doc() -> set[str]:
    doc = Doc()
    doc.h("t")
    doc.p("x")
    doc.eq([("a", ["b"])])
    return {k for k, _ in doc.blocks}


def test_every_module_is_a_format_whose_writer_visits_every_block_kind():
    assert _kinds_of_doc() == BLOCK_KINDS
    seen: dict[str, str] = {}
    for name in formats.names():
        w = formats.get(name)
        assert w.name == name and w.extensions, name
        for ext in w.extensions:
            assert ext not in seen, f"{ext} claimed by {seen.get(ext)} and {name}"
            seen[ext] = name
        if name != "json":  # the derivation as data: it reads no document
            assert all(callable(getattr(w, f"visit_{k}", None)) for k in BLOCK_KINDS), name
    assert FORMATS == formats.names()


def test_an_unknown_format_is_one_clear_error():
    from derivgrad.errors import UsageError

    with pytest.raises(UsageError, match="unknown format 'docx'; choose"):
        formats.get("docx")


SHOUT = """
from derivgrad.formats import Writer


class ShoutWriter(Writer):
    name = "shout"
    extensions = (".shout",)

    def visit_h(self, x):
        return x[1].upper()

    def visit_p(self, x):
        return x

    def visit_eq(self, x):
        return "; ".join(lhs + " = " + " ".join(f) for lhs, f in x)


WRITER = ShoutWriter
"""


def test_adding_a_module_adds_a_format_everywhere(tmp_path, monkeypatch):
    # a format module placed beside the others (on the package's path) and nothing else
    (tmp_path / "shout.py").write_text(SHOUT)
    monkeypatch.setattr(formats, "__path__", [*formats.__path__, str(tmp_path)])
    import derivgrad

    assert "shout" in formats.names()
    assert formats.from_path("x.shout") == "shout"
    out = render(derivgrad.derive("relu", features=2), "shout")
    assert "RELU" in out and "PROOF" in out
    from derivgrad.documents.worked import document, documents

    docs = documents()[:3]  # the map of sources, then two worked problems
    assert document("shout", docs).count("WORKED PROBLEM") >= 2


def test_the_cli_reads_the_list_and_infers_the_format_from_the_output_suffix(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "derivgrad", "derive", "--help"], capture_output=True, text=True
    )
    assert "{" + ",".join(formats.names()) + "}" in r.stdout.replace("\n", "").replace(" ", "")
    for suffix, marker in ((".md", "$$"), (".html", "<!DOCTYPE html>"), (".tex", "\\begin{")):
        out = tmp_path / f"relu{suffix}"
        r = subprocess.run(
            [sys.executable, "-m", "derivgrad", "derive", "relu", "--features", "2", "-o", out],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        assert marker in Path(out).read_text(), suffix
