"""Documents of a defined layer read like a built-in's (issue 26, item 7): prose as prose,
each statement's tensor a named step (its entries, local derivatives and numbers), no
"too long to print" for a readable layer, the right shapes in the problem, 1-based ranges
(tested in test_define.py), and ``--name``/``--title`` on the command line."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

import derivgrad
from derivgrad.cli import main
from derivgrad.documents.render import render
from derivgrad.notation.derivation import step_forms

LAYERNORM = """
m[n] += x[n, d] / len(d)
c[n, d] = x[n, d] - m[n]
v[n] += c[n, d]**2 / len(d)
y[n, d] = g[d] * c[n, d] / sqrt(v[n] + 1e-5)
"""
ATTENTION = """
s[i, j] += q[i, d] * k[j, d]
e[i, j] = exp(s[i, j])
z[i] += e[i, j]
y[i, d] += e[i, j] / z[i] * v[j, d]
"""
CAUSAL_TWICE = """
h[n, i] += x[n, i - u] * w[u]
y[n, i] += h[n, i - u] * w[u]
"""
PROGRAMS = {
    "layernorm": (LAYERNORM, {"x": (2, 3), "g": (3,)}, {}),
    "attention": (ATTENTION, {"q": (2, 2), "k": (3, 2), "v": (3, 2)}, {}),
    "causal": (CAUSAL_TWICE, {"x": (1, 6), "w": (2,)}, {}),
    "pool": ("h[i] = max(x[i], 0); y[i] += h[2*i + u] * 2", {"x": (7,)}, {"u": 2}),
}


@pytest.fixture(scope="module")
def layernorm():
    return derivgrad.define(LAYERNORM, x=(2, 3), g=(3,)).derive()


@pytest.mark.parametrize("name", PROGRAMS)
def test_each_step_written_with_what_it_reads_composes_to_the_whole(name):
    spec, shapes, ranges = PROGRAMS[name]
    op = derivgrad.define(spec.replace(";", "\n"), ranges=ranges, **shapes)
    d = op.derive()
    forms = step_forms(op, d)
    full = dict(d.extra["steps"], **{op.output: d.output_array})
    names = d.extra["step_symbols"]
    back: dict = {}  # step symbol -> its whole expression in the inputs
    for n in op.program.defined:
        for idx in np.ndindex(*forms[n].shape):
            composed = sp.sympify(forms[n][idx]).xreplace(back)
            assert sp.simplify(composed - full[n][idx]) == 0, (n, idx)
        if n in names:
            back.update(zip(names[n].reshape(-1), full[n].reshape(-1)))


def test_a_four_statement_layer_norm_names_its_steps_and_prints_every_formula(layernorm):
    tex = render(layernorm, "latex")
    assert "too long to print" not in tex
    for step in ("m", "c", "v"):
        assert f"Step ${step}$, statement" in tex
    # the later sections write the steps by name: y = g c / sqrt(v + eps)
    assert r"y_{1,1} &= \frac{c_{1,1} g_{1}}{\sqrt{v_{1} + \frac{1}{100000}}}" in tex
    assert r"\frac{\partial v_{1}}{\partial c_{1,1}} &= \frac{2 c_{1,1}}{3}" in tex
    closed = tex[tex.index("Closed form") : tex.index("General-size")]
    for k in ("x", "g"):  # never an empty closed form
        assert r"\frac{\partial L}{\partial %s_{1" % k in closed


def test_prose_is_prose_in_the_closed_form(layernorm):
    tex = render(layernorm, "latex")
    assert r"Rule for $x$: $\partial L/\partial x$, the general-size rule in index" in tex
    text = render(layernorm, "text")
    assert "general-size rule in index notation below" in text  # words, not −-joined math


def test_a_step_prints_its_numbers(layernorm):
    from derivgrad.documents.instance import attach

    x = [[1, 2, 3], [4, 5, 7]]
    d = attach(layernorm, {"x": x, "g": [1, 1, 1]})
    tex = render(d, "latex")
    steps = tex[tex.index("Named steps") : tex.index("Forward pass")]
    m = [sum(Fraction(t) for t in row) / 3 for row in x]  # the mean, computed here
    assert r"With the given numbers, $m$ is" in steps
    assert m[1] == Fraction(16, 3) and r"\frac{16}{3}" in steps


def test_the_problem_gives_each_input_its_own_shape():
    op = derivgrad.define(
        "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]", x=(1, 2, 5, 5), w=(2, 3, 3)
    )
    text = render(op.derive(), "markdown")
    line = next(x for x in text.splitlines() if x.startswith("Problem."))
    assert "w = 3" not in line and "x = " not in line
    assert r"w \in \mathbb{R}^{2 \times 3 \times 3}" in line
    assert r"x \in \mathbb{R}^{1 \times 2 \times 5 \times 5}" in line


def test_name_and_title_on_the_command_line(capsys):
    spec = "y[i] = x[i] * 2"
    assert main(
        [
            "derive",
            "--define",
            spec,
            "--shape",
            "x=2",
            "--name",
            "doubler",
            "--title",
            "Doubling layer",
            "--format",
            "text",
        ]
    ) in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("Doubling layer: the gradient")
    assert (
        main(["check", "--define", spec, "--shape", "x=2", "--name", "doubler", "--examples", "1"])
        == 0
    )
    assert "doubler" in capsys.readouterr().out
    assert main(["derive", "relu", "--title", "T"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--title describes a layer of --define" in err
    assert main(["derive", "--define", spec, "--shape", "x=2", "--name", "not a name"]) == 2
    assert "name must be an identifier" in capsys.readouterr().err
