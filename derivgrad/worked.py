"""The thirteen worked problems of the course notes as one document (or one at a time):
``derivgrad derive worked-problems`` and ``examples/worked_problems.py``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .document import Doc
from .registry import OPS
from .render import PREAMBLE, build, to_latex, to_markdown, to_text
from .symbolic.derivation import Derivation


def _gradcheck_doc():
    from ._gradcheck import gradcheck
    from .errors import GradcheckError

    doc = Doc()
    doc.h("Numerical gradient checking (worked problem 13)")
    x = dict(x1=np.array(2.0), x2=np.array(-3.0), x3=np.array(0.5))
    f = lambda x1, x2, x3: x1 * x2 * x3
    good = dict(x1=x["x2"] * x["x3"], x2=x["x1"] * x["x3"], x3=x["x1"] * x["x2"])
    rep = gradcheck(f, x, good)
    doc.p(
        r"For $y = x_1 x_2 x_3$ at $x = (2, -3, 0.5)$ the central differences "
        r"$(f(x + h e_i) - f(x - h e_i)) / 2h$ with $h = 10^{-5}$ agree with the analytic gradient "
        f"$(x_2 x_3, x_1 x_3, x_1 x_2) = ({good['x1']:g}, {good['x2']:g}, {good['x3']:g})$ to "
        f"{rep.max_abs_error:.1e}."
    )
    try:
        gradcheck(f, x, dict(good, x2=x["x1"] * x["x1"]))
        caught = "not caught"
    except GradcheckError as e:
        caught = e.report.failures[0]
    doc.p(
        f"A planted mistake, $\\partial y/\\partial x_2 = x_1^2$, is caught: analytic "
        f"{caught[2]:g}, numeric "
        f"{caught[3]:.6g}. Two evaluations per coordinate make this too slow to train with, and "
        f"right for tests."
    )
    return doc


def problems() -> list[tuple[str, Any]]:
    """``[(number, make)]`` in the notes' order: every op's worked problems (its generic worked
    solution on the problem's instance, or a document of its own) and problem 13."""
    found: list[tuple[str, Any]] = [("13", _gradcheck_doc)]
    for op in OPS.values():
        for p in op.worked_problems():
            if p.make is not None:
                found.append((p.number, p.make))
            else:
                found.append((p.number, lambda op=op, p=p: _proved(op.build(**p.params))))
    return sorted(found, key=lambda item: _number_key(item[0]))


def _proved(d: Derivation) -> Doc:
    """The generic worked solution of ``d`` after :meth:`Derivation.verify` held: a worked
    problem says "proved" only when the proof ran."""
    d.verify()
    return build(d)


def _number_key(number: str) -> tuple[int, str]:
    digits = "".join(ch for ch in number if ch.isdigit())
    return int(digits), number


def document(fmt="latex"):
    docs = [make() for _, make in problems()]
    if fmt == "latex":
        body = "\n".join(to_latex(doc, standalone=False, numbered=True) for doc in docs)
        return (
            PREAMBLE + "\\title{Gradients of convolutional networks: worked "
            "solutions}\n\\author{derivgrad}\n"
            "\\begin{document}\n\\maketitle\n\\tableofcontents\n\\newpage\n"
            + body
            + "\\end{document}\n"
        )
    if fmt == "markdown":
        return "\n\n".join(to_markdown(doc) for doc in docs)
    return "\n\n".join(to_text(doc) for doc in docs)
