"""The thirteen worked problems of the course notes as one document (or one at a time):
``derivgrad derive worked-problems`` and ``examples/worked_problems.py``."""

import numpy as np
import sympy as sp

from . import derive
from .render import PREAMBLE, Doc, bmatrix, build, tex, to_latex, to_markdown, to_text


def _shapes_doc():
    from .symbolic.shapes import conv_layer, symbolic_output_size

    doc = Doc()
    doc.h("Shape arithmetic (worked problem 4)")
    f, (n, p, k, s, d) = symbolic_output_size()
    doc.p(
        "The output size of a convolution or pooling window along one axis, from the one formula the "
        "kernels use:"
    )
    doc.eq(
        [
            (r"n_{out}", [tex(f)]),
            (r"n_{out}\big|_{d=1,\; s \mid n+2p-k}", [tex((n + 2 * p - k) / s + 1)]),
        ]
    )
    a = conv_layer((32, 32), 3, 5, 1)
    b = conv_layer((32, 32), 3, 5, 10, padding=2)
    c = conv_layer((32, 32), 3, 1, 4)
    doc.p(
        f"A 32×32×3 image and a 5×5×3 filter at stride 1 give {a['output'][1]}×{a['output'][2]}; zero-padding "
        f"by 2 keeps {b['output'][1]}×{b['output'][2]}; ten such filters give "
        f"{b['output'][1]}×{b['output'][2]}×{b['output'][0]} with {b['weights']} weights ({b['params']} with "
        f"biases); a 1×1 convolution keeps the spatial size ({c['output'][1]}×{c['output'][2]}). Max pooling "
        f"with window K and stride S gives (W − K)/S + 1 and keeps the channels."
    )
    return doc


def _matrix_doc():
    from .symbolic.conv import conv_matrix

    d = derive("conv1d", input=4, kernel=3, padding=1, bias=False)
    doc = Doc()
    doc.h("Convolution as a matrix (worked problem 5)")
    doc.p(
        r"For $x \in \mathbb{R}^4$ zero-padded by 1 to $\mathbb{R}^6$ and $w \in \mathbb{R}^3$, the map"
        " from the padded input to the output is the "
        " the banded (Toeplitz) matrix below; derivgrad builds it by reading the coefficients of the correlation "
        "of a symbolic padded input, for any stride, padding, channels and 2-D inputs, and proves that its "
        "transpose applied to δ, cropped, is the input gradient."
    )
    doc.eq([("M", [bmatrix(np.array(conv_matrix(d).tolist(), dtype=object))])])
    return doc


def _index_doc():
    from .symbolic.index_rules import conv2d_rules

    _, dx, dw, _ = conv2d_rules()
    doc = Doc()
    doc.h("Channels, filters and batch in index notation (worked problem 8)")
    doc.p(
        "From the forward definition with symbolic sizes, SymPy differentiates and resolves the Kronecker deltas; "
        "each input channel is handled by its slice of the filter, the input gradient sums over filters, the "
        "weight gradient sums over the batch:"
    )
    doc.eq([_index_rule(r"\frac{\partial L}{\partial x_{n,c',a,b}}", dx)])
    doc.eq([_index_rule(r"\frac{\partial L}{\partial w_{o',c',a,b}}", dw)])
    return doc


def _index_rule(lhs, e):
    """``Sum(Piecewise((term, cond), (0, True)), limits...)`` as the sum of the term, with its
    condition as an Iverson bracket on the next line."""
    if isinstance(e, sp.Sum) and isinstance(e.function, sp.Piecewise):
        (term, cond), _ = e.function.args
        idx = ",".join(tex(l[0]) for l in e.limits)
        conds = [tex(c) for c in (cond.args if isinstance(cond, sp.And) else (cond,))]
        lines = [r"\sum_{%s} %s \;\big[" % (idx, tex(term)) + r" \wedge ".join(conds[:3])]
        for k in range(3, len(conds), 3):
            lines.append(r"\wedge " + r" \wedge ".join(conds[k : k + 3]))
        lines[-1] += r"\big]"
        return lhs, lines
    return lhs, [tex(e)]


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
        f"A planted mistake, $\\partial y/\\partial x_2 = x_1^2$, is caught: analytic {caught[2]:g}, numeric "
        f"{caught[3]:.6g}. Two evaluations per coordinate make this too slow to train with, and right for tests."
    )
    return doc


PROBLEMS = [
    ("1", lambda: build(derive("softmax", classes=3))),
    ("2", lambda: build(derive("logistic_regression", classes=3, features=2, label=2))),
    ("3", lambda: build(derive("residual", features=2, hidden=2))),
    ("4", _shapes_doc),
    ("5", _matrix_doc),
    ("6", lambda: build(derive("conv1d", input=4, kernel=3, bias=False))),
    ("7", lambda: build(derive("conv2d", input=(3, 3), kernel=(2, 2), bias=False))),
    ("8", _index_doc),
    (
        "9",
        lambda: build(
            derive("conv2d", input=(4, 4), kernel=(2, 2), stride=2, padding=1, bias=False)
        ),
    ),
    ("10", lambda: build(derive("maxpool2d", input=(4, 4), kernel=2))),
    ("10b", lambda: build(derive("avgpool2d", input=(4, 4), kernel=2))),
    ("11", lambda: build(derive("batchnorm2d", batch=2, channels=1, input=(1, 2)))),
    ("12", lambda: build(derive("lenet"))),
    ("13", _gradcheck_doc),
]


def document(fmt="latex"):
    docs = [make() for _, make in PROBLEMS]
    if fmt == "latex":
        body = "\n".join(to_latex(doc, standalone=False, numbered=True) for doc in docs)
        return (
            PREAMBLE
            + "\\title{Gradients of convolutional networks: worked solutions}\n\\author{derivgrad}\n"
            "\\begin{document}\n\\maketitle\n\\tableofcontents\n\\newpage\n"
            + body
            + "\\end{document}\n"
        )
    if fmt == "markdown":
        return "\n\n".join(to_markdown(doc) for doc in docs)
    return "\n\n".join(to_text(doc) for doc in docs)
