"""The thirteen worked problems of the course notes as one document (or one at a time):
``derivgrad derive worked-problems`` and ``examples/worked_problems.py``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import formats
from ..errors import UsageError
from ..ops.base import Problem
from ..registry import OPS
from ..symbolic.derivation import Derivation
from .document import Doc
from .render import LAYOUT, LAYOUT_AGAIN, build


def _gradcheck_doc():
    """Worked problem 13 with the notes' numbers: ``y = x_1 x_2 x_3`` at ``(2, 1, 3)``, whose
    gradient is ``(3, 6, 2)``, and a planted mistake in a linear layer that the check
    catches."""
    from ..checks.gradcheck import gradcheck
    from ..errors import GradcheckError

    doc = Doc()
    doc.h("Numerical gradient checking (worked problem 13)")
    x = dict(x1=np.array(2.0), x2=np.array(1.0), x3=np.array(3.0))
    f = lambda x1, x2, x3: x1 * x2 * x3  # noqa: E731
    good = dict(x1=x["x2"] * x["x3"], x2=x["x1"] * x["x3"], x3=x["x1"] * x["x2"])
    rep = gradcheck(f, x, good)
    doc.p(
        r"The central difference $\frac{f(x + h e_i) - f(x - h e_i)}{2h}$ with $h = 10^{-5}$, "
        r"one coordinate at a time, approximates $\partial f / \partial x_i$ with a truncation "
        r"error $\frac{h^2}{6} \partial_i^3 f$ of order $h^2$. For $y = x_1 x_2 x_3$ at "
        r"$x = (2, 1, 3)$ the analytic gradient is "
        f"$(x_2 x_3, x_1 x_3, x_1 x_2) = ({good['x1']:g}, {good['x2']:g}, {good['x3']:g})$, "
        f"and the central differences agree with it to {rep.max_abs_error:.1e}. That is not "
        r"the $h^2$ term: $y$ is linear in each coordinate, so $\partial_i^3 f = 0$ and the "
        r"central difference is exact in exact arithmetic. What is left is floating-point "
        r"round-off: each evaluation of $f = "
        f"{f(**x):g}$ is off by up to $\\epsilon |f|$ with $\\epsilon = 2^{{-52}}$, which "
        r"the division by $2h$ magnifies to about $\epsilon |f| / h \approx "
        f"{np.finfo(float).eps * abs(f(**x)) / 1e-5:.0e}$."
    )
    # a linear layer y = W x + b whose backward forgot the transpose: dx = W δ, not Wᵀ δ
    W = np.array([[1.0, 2.0], [-3.0, 0.5]])
    b = np.array([0.1, -0.2])
    xv = np.array([0.7, -1.1])
    delta = np.array([1.0, 2.0])
    lin = lambda x, W, b: W @ x + b  # noqa: E731
    wrong = dict(x=W @ delta, W=np.outer(delta, xv), b=delta)
    try:
        gradcheck(lin, dict(x=xv, W=W, b=b), wrong, upstream=delta)
        caught = None
    except GradcheckError as e:
        caught = e.report.failures[0]
    right = W.T @ delta
    doc.p(
        r"A planted mistake: a linear layer $y = Wx + b$ whose backward pass forgets the "
        r"transpose, $\partial L / \partial x = W \delta$ instead of $W^\top \delta$. With "
        r"$W = \begin{bmatrix} 1 & 2 \\ -3 & 0.5 \end{bmatrix}$, $b = (0.1, -0.2)$, "
        r"$x = (0.7, -1.1)$ and $\delta = (1, 2)$, the loss the check differentiates is "
        r"$L = \delta^\top y = \delta^\top (Wx + b) = "
        f"{float(delta @ lin(xv, W, b)):g}$; the faulty backward pass "
        f"returns $({wrong['x'][0]:g}, {wrong['x'][1]:g})$ where $W^\\top \\delta = "
        f"({right[0]:g}, {right[1]:g})$"
        + (
            f"; the check catches it at $x_{{{caught[1][0] + 1 if caught[1] else 1}}}$: "
            f"analytic ${caught[2]:g}$, numeric ${caught[3]:.6g}$."
            if caught is not None
            else "; the check did NOT catch it."
        )
    )
    doc.p(
        "Two evaluations of the whole function per coordinate make this far too slow to train "
        "with, and right for tests."
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
                found.append((p.number, lambda op=op, p=p: _proved(derivation(op, p), heading(p))))
    return sorted(found, key=lambda item: _number_key(item[0]))


def derivation(op: Any, p: Problem) -> Derivation:
    """The problem's derivation, with its numbers attached when it has any."""
    from .instance import attach

    d = op.build(**(p.params or {}))
    return d if p.values is None else attach(d, p.values)


def heading(p: Problem) -> str:
    """A worked problem's section title: what it is about, and its number in the notes (or
    its source, for one that is not a numbered problem of the notes)."""
    return f"{p.title} ({p.source or f'worked problem {_number_key(p.number)[0]}'})"


def _proved(d: Derivation, title: str) -> Doc:
    """The generic worked solution of ``d`` after :meth:`Derivation.verify` held: a worked
    problem says "proved" only when the proof ran."""
    d.verify()
    return build(d, heading=title)


def _number_key(number: str) -> tuple[int, str]:
    digits = "".join(ch for ch in number if ch.isdigit())
    return int(digits), number


# where each worked problem comes from in the course material (shared/seeds: 000 and 001 the
# discussion notes, 002 the LeNet homework, 003 the lecture slides, 004 the lecture notes)
SOURCES = {
    "1": "file 000, the softmax recalled before Problem 1",
    "2": "file 000, Problems 1 and 2 (linear layer parameters; input)",
    "3": "file 000, Problem 3 (a nonlinear computation graph)",
    "4": "file 000, Problem 4; file 001, Problem 1 (a) (convolution dimensions)",
    "5": "file 000, Problem 5; file 001, (b) (convolutions as matrix multiplication)",
    "6": "file 000, Problem 6; file 001, (c) (backward pass, 1-D)",
    "7": "file 003, slides 28-77 (one sample, filter and channel)",
    "7b": "file 004 (convolution, ReLU and a squared error)",
    "8": "file 001, (d) and (e) (backpropagation, 2-D, channels and filters)",
    "9": "the course's list of worked problems (stride, padding, dilation), derived here",
    "10": "file 001, (g) (max pooling, eq. (6))",
    "10b": "file 001, (g) (average pooling, eqs. (4)-(5))",
    "10c": "file 001, (g) eq. (6) at a tie",
    "11": "file 001 (batch normalisation for CNNs)",
    "12": "file 002, Homework I (the LeNet network), on a reduced instance",
    "12b": "file 002, Homework I, at its real size (1,446,030 parameters), checked numerically",
    "13": "file 003 (numerical gradient checking)",
    "14": "file 003, slides 28-77, with the slides' X, W and upstream gradient",
    "14e": "files 000, 001 and 003 (slips found while reproducing them)",
}


TITLE = "Gradients of convolutional networks: worked solutions"


def sources_doc(found: list[tuple[str, Any]]) -> Doc:
    """The map from this document's numbering to the course material."""
    doc = Doc()
    doc.h("Where each problem comes from")
    doc.p(
        "The sections below follow the numbering of the course's list of worked problems; "
        "files are those of the course material (000 and 001 the discussion notes, 002 the "
        "LeNet homework, 003 the lecture slides, 004 the lecture notes):"
    )
    for number, _ in found:
        doc.p(f"{number}: {SOURCES.get(number, 'derivgrad (no source in the notes)')}.")
    return doc


def documents(progress: Callable[[int, int, str], None] | None = None) -> list[Doc]:
    """Every worked problem's document, in the notes' order; ``progress(k, n, number)`` is
    called before problem ``k`` of ``n`` is derived (the command line reports it)."""
    found = problems()
    out = [sources_doc(found)]
    for k, (number, make) in enumerate(found, 1):
        if progress is not None:
            progress(k, len(found), number)
        out.append(make())
    said = False  # the layout sentence, once per document
    for doc in out:
        for k, block in enumerate(doc.blocks):
            if block == ("p", LAYOUT):
                if said:
                    doc.blocks[k] = ("p", LAYOUT_AGAIN)
                said = True
    _said_once(out)
    return out


REPEATED_CHARS = 200  # an explanation this long is written out once per collection


def _said_once(docs: list[Doc]) -> None:
    """A long explanation that an earlier problem wrote out in full (the tie convention, the
    compact rule's padding, T's construction) keeps its first sentence and points back to that
    problem.  A paragraph that introduces what follows (ends with a colon), a problem's
    statement and its rules stay whole."""
    where: dict[str, str] = {}
    for doc in docs:
        title = next((b[1][1] for b in doc.blocks if b[0] == "h"), "")
        found = re.search(r"worked problem \w+", title)
        ref = found.group(0) if found else f"“{title}”"
        for k, (kind, text) in enumerate(doc.blocks):
            if kind != "p" or len(text) < REPEATED_CHARS or text.rstrip().endswith(":"):
                continue
            if text.startswith(("Problem.", "Rule for")):  # each problem states its own
                continue
            first = first_sentence(text)
            if text in where and first != text:
                doc.blocks[k] = ("p", f"{first} (In full under {where[text]}.)")
            else:
                where[text] = ref


def first_sentence(text: str) -> str:
    """``text`` up to the end of its first sentence (a full stop outside ``$…$`` followed by a
    space), with that full stop."""
    math = False
    for i, ch in enumerate(text):
        if ch == "$" and (i == 0 or text[i - 1] != "\\"):
            math = not math
        elif ch == "." and not math and text[i + 1 : i + 2] == " ":
            return text[: i + 1]
    return text


def document(
    fmt: str = "latex",
    docs: list[Doc] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> str:
    """The collection in ``fmt`` (``docs``: :func:`documents`, built once by a caller that
    renders several formats)."""
    writer = formats.get(fmt)
    if not writer.collects:
        raise UsageError(f"--format {fmt} describes one derivation: name an op")
    return writer.collection(documents(progress) if docs is None else docs, TITLE)
