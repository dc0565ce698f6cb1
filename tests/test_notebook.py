"""The example notebook runs (nbclient, a fresh kernel) and its outputs are right: the worked
solution displays as HTML with MathML and closes with the kernels' check, parts display as
matrices, and the numbers it states equal an independent NumPy reference
(``tests/naive.py``) on the lecture's arrays and the user-defined layer's own formula."""

from __future__ import annotations

import ast
from fractions import Fraction
from pathlib import Path

import naive
import numpy as np
import pytest
import sympy as sp

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "conv2d_with_numbers.ipynb"


@pytest.fixture(scope="module")
def cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    out = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        errors = [o for o in c.outputs if o.output_type == "error"]
        assert not errors, errors[0].get("evalue")
        results = [o for o in c.outputs if o.output_type == "execute_result"]
        out.append((c.source, results[0].data if results else {}))
    return out


def _cell(cells, text):
    return next(data for source, data in cells if text in source)


def _value(data):
    return sp.sympify(data["text/plain"])


def _inputs(cells):
    """The lecture's arrays, read from the notebook's own source (not copied here)."""
    src = next(source for source, _ in cells if "upstream = " in source)
    scope: dict = {}
    exec("\n".join(line for line in src.splitlines() if " = [" in line), scope)
    return (np.array(scope[k], dtype=np.float64) for k in ("x", "w", "upstream"))


def test_the_worked_solution_displays(cells):
    data = _cell(cells, "d  # the worked solution")
    assert {"text/html", "text/latex", "text/markdown", "text/plain"} <= set(data)
    assert "<math" in data["text/html"] and "merror" not in data["text/html"]
    assert "give the same arrays" in data["text/plain"].replace("\n", " ")
    assert "\\" not in data["text/plain"]


def test_parts_display_as_matrices(cells):
    for part in ('d.jacobian("x")', 'd.grad("w")', 'numbers(d, "x")'):
        assert "matrix" in _cell(cells, part)["text/latex"], part


def test_the_lecture_numbers_match_an_independent_reference(cells):
    x, w, up = _inputs(cells)
    y = naive.conv2d(x[None, None], w[None, None])[0, 0]
    dx, dw, _ = naive.conv2d_backward(up[None, None], x[None, None], w[None, None])
    got_x = np.array(_value(_cell(cells, 'numbers(d, "x")')), dtype=np.float64)
    got_w = np.array(_value(_cell(cells, 'numbers(d, "w")')), dtype=np.float64)
    got_y = np.array(_value(_cell(cells, "numbers(d)")), dtype=np.float64)
    assert np.array_equal(got_x, dx[0, 0])
    assert np.array_equal(got_w, dw[0, 0])
    assert np.array_equal(got_y, y)


def test_the_user_defined_layer(cells):
    src = next(source for source, _ in cells if "derivgrad.define(" in source)
    assert "class " not in src  # written in index notation, not as an Op subclass
    data = _cell(cells, "derivgrad.define(")
    assert "<math" in data["text/html"]
    assert "give the same arrays" in data["text/plain"].replace("\n", " ")
    dz, dw = _value(_cell(cells, 'numbers(mine, "z")'))
    # its rule, y = w ⊙ z²: dz = 2 δ w z, dw = δ z², on the notebook's own numbers, exactly
    call = next(
        n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.keyword) and n.arg == "values"
    )
    given = {k: [Fraction(v) for v in vs] for k, vs in ast.literal_eval(call.value).items()}
    z, w, up = given["z"], given["w"], given["upstream"]
    assert list(dz) == [2 * u * b * a for a, b, u in zip(z, w, up)]
    assert list(dw) == [u * a**2 for a, u in zip(z, up)]
    # the generated kernels on the same numbers (exact in float64: halves and small integers)
    shown = eval(_cell(cells, "layer.backward(")["text/plain"], {"array": np.array})
    assert list(shown["z"]) == [float(v) for v in dz]
    assert list(shown["w"]) == [float(v) for v in dw]
