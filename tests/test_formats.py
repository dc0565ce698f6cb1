"""Every op (from the registry, no op names) in every format, as a numeric instance: LaTeX,
Markdown, HTML, Unicode text, JSON, and a notebook's display.  The numbers are checked from
outside SymPy: the gradients the documents state equal those of the op's Numba kernels,
run here on the same arrays; the JSON validates against its schema and reads back into
SymPy equal to ``derive(...)``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from derivgrad import derive
from derivgrad.documents.instance import attach, evaluate, random_values, substitutions, value_names
from derivgrad.documents.render import build, render, to_latex, to_markdown, to_text
from derivgrad.errors import ParamError
from derivgrad.formats.html import to_html
from derivgrad.formats.json import read, schema, to_data
from derivgrad.formats.text import WIDTH, width
from derivgrad.registry import OPS, get

jsonschema = pytest.importorskip("jsonschema")

LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")


@pytest.fixture(scope="module")
def instances():
    """{op: (derivation with small integer values, its document)} for every op."""
    out = {}
    for name in OPS:
        d = derive(name)
        d = attach(d, random_values(d, 3))
        out[name] = (d, build(d))
    return out


@pytest.mark.parametrize("name", list(OPS))
def test_numbers_reach_every_format(instances, name):
    d, doc = instances[name]
    latex, md, page, text = to_latex(doc), to_markdown(doc), to_html(doc), to_text(doc)
    # the closing line: derivgrad's kernels were run and gave the same arrays
    for out in (latex, md, text):
        assert "give the same arrays" in out.replace("\n", " ")
    assert "give the same arrays" in page
    # standalone: nothing fetched from anywhere (no script, stylesheet, font or image links)
    assert not re.search(r"<script|<link|<img|@import|url\(|src=", page)
    # every given number is printed: the inputs' matrices are in each format
    for k in d.values:
        for v in d.values[k].reshape(-1):
            assert str(abs(v)) in text
    assert latex.count(r"\begin{bmatrix}") >= len(d.values)
    assert page.count("<mtable") >= len(d.values)


@pytest.mark.parametrize("name", list(OPS))
def test_stated_gradients_equal_the_kernels(instances, name):
    """The gradients the JSON states (exact) against the kernels, run here independently."""
    d, _ = instances[name]
    data = to_data(d)
    floats = {k: np.array(v, dtype=np.float64) for k, v in d.values.items() if k != "upstream"}
    up = d.values.get("upstream")
    upstream = np.ones(d.output_array.shape) if up is None else np.array(up, dtype=np.float64)
    y, grads = get(name).kernel(d, floats, upstream)
    tol = 1e-9 * (1 + max(float(np.max(np.abs(g))) for g in grads.values()))
    stated_y = np.array(data["forward_values"], dtype=object)
    assert np.allclose(_floats(stated_y), np.asarray(y).reshape(stated_y.shape), atol=tol)
    for k, g in grads.items():
        stated = np.array(data["gradients"][k]["values"], dtype=object)
        assert np.allclose(_floats(stated), np.asarray(g).reshape(stated.shape), atol=tol), k
    assert data["kernel_check"] is not None
    assert max(data["kernel_check"].values()) <= tol


def _floats(a: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: float(Fraction(v)) if isinstance(v, str) else v)(a).astype(
        np.float64
    )


@pytest.mark.parametrize("name", list(OPS))
def test_json_validates_and_reads_back(instances, name):
    d, _ = instances[name]
    text = render(d, "json")
    data = json.loads(text)
    jsonschema.validate(data, schema())
    assert data["version"] == 1 and data["op"] == d.op
    back = read(text)
    for k, v in d.input_arrays.items():
        assert (back["inputs"][k] == v).all()
    assert (back["output"] == d.output_array).all()
    for k in d.grad_names:
        assert (back["gradients"][k] == d.grad_array(k)).all(), k
    for k, J in back["jacobian"].items():
        assert (J == d.jacobian_array(k)).all(), k
    # the exact values are the gradients evaluated at the given numbers
    subs = substitutions(d)
    for k in d.grad_names:
        exact = evaluate(d.grad_array(k), subs)
        stated = np.array(data["gradients"][k]["values"], dtype=object)
        for a, b in zip(exact.reshape(-1), stated.reshape(-1)):
            if isinstance(b, float):  # an irrational value, stated to float precision
                assert abs(float(a) - b) <= 1e-12 * (1 + abs(b))
            else:
                assert a == sp.sympify(b)


@pytest.mark.parametrize("numeric", [False, True], ids=["symbolic", "numeric"])
@pytest.mark.parametrize("name", list(OPS))
def test_text_is_unicode_for_80_columns(instances, name, numeric):
    d, doc = instances[name]
    text = to_text(doc if numeric else build(derive(name)))
    assert not LATEX_COMMAND.search(text), LATEX_COMMAND.search(text)
    assert "$" not in text and "\\" not in text
    wide = [line for line in text.splitlines() if width(line) > WIDTH]
    assert not wide, wide[:2]
    assert "=" in text and ("∂" in text or "δ" in text)  # the mathematics, in Unicode


def test_text_of_the_worked_problems():
    from derivgrad.documents.worked import document

    text = document("text")
    assert "\\" not in text
    assert max(width(line) for line in text.splitlines()) <= WIDTH


@pytest.mark.parametrize("name", list(OPS))
def test_notebook_display(instances, name):
    d, _ = instances[name]
    bundle = d._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/latex", "text/markdown", "text/plain"}
    assert "<math" in bundle["text/html"] and "<html" not in bundle["text/html"]
    assert r"\begin{document}" not in bundle["text/latex"]
    assert not LATEX_COMMAND.search(bundle["text/plain"])
    # parts display as matrices
    k = d.grad_names[0]
    assert "matrix" in d.grad(k)._repr_latex_() or d.grad(k).rank() == 0


def test_exact_rationals_and_partial_values():
    """Fractions stay exact; a name left out stays symbolic and the kernels are not run."""
    name = next(n for n in OPS if len(value_names(derive(n))) >= 3)
    d = derive(name)
    first, *rest = value_names(d)
    shape = d.input_arrays[first].shape
    values = {first: np.full(shape, Fraction(1, 3), dtype=object).tolist()}
    d = attach(d, values)
    assert all(v == sp.Rational(1, 3) for v in d.values[first].reshape(-1))
    text = render(d, "text")
    assert "1/3" in text
    assert "stayed symbolic" in text.replace("\n", " ")
    assert to_data(d)["kernel_check"] is None


@pytest.mark.parametrize(
    "values, words",
    [
        ({"nope": 1}, ["nope", "takes"]),
        ({"__first__": [[1, 2], [3]]}, ["ragged"]),
        ({"__first__": "x + 1"}, ["number"]),
        ({"__first__": float("nan")}, ["finite"]),
        ({"__first__": [1] * 1000}, ["shape"]),
    ],
)
def test_bad_values_name_the_argument(values, words):
    name = next(iter(OPS))
    first = value_names(derive(name))[0]
    values = {(first if k == "__first__" else k): v for k, v in values.items()}
    with pytest.raises(ParamError) as e:
        derive(name, values=values)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "derivgrad", "derive", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_values_and_random_values():
    name = next(iter(OPS))
    d = derive(name)
    first = value_names(d)[0]
    ones = json.dumps(np.ones(d.input_arrays[first].shape, dtype=int).tolist())
    r = _cli(name, "--random-values", "5", "--value", f"{first}={ones}", "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data["values"]) == set(value_names(d))
    assert data["proof"]["verified"] is True  # the command line proves before it writes
    assert all(v == "1" for v in np.array(data["values"][first]).reshape(-1))
    for bad, word in (("--value", "nonsense"), ("--random-values", "-1")):
        arg = [bad, word] if bad == "--value" else [bad, word]
        r = _cli(name, *arg)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert bad.lstrip("-").split("-")[0] in r.stderr or "seed" in r.stderr
