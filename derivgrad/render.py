r"""Worked solutions from derivations: LaTeX (standalone or fragment), Markdown, text.

A document follows the course's order: the problem, the forward pass in scalar form, the
local derivatives (4-D Jacobians as block matrices, input-first layout), the chain rule as
a contraction with the upstream gradient δ, the closed form, and the compact rule with
what :meth:`Derivation.verify` proved.  Every formula is printed from the SymPy object it
states, by one printer (:func:`tex`), so text and mathematics cannot drift apart.
"""

import itertools

import numpy as np
import sympy as sp

MAX_TERMS_PER_LINE = 4


def tex(e):
    """LaTeX of one expression: SymPy's printer, products without ``\\cdot`` noise."""
    return sp.latex(e, mul_symbol=None)


def tex_split(e, per_line=MAX_TERMS_PER_LINE):
    """A long sum broken over ``align*`` lines (returns a list of line fragments)."""
    if not isinstance(e, sp.Add) or len(e.args) <= per_line:
        return [tex(e)]
    terms = list(sp.Add.make_args(e))
    terms = sorted(terms, key=sp.default_sort_key)
    lines = []
    for k in range(0, len(terms), per_line):
        chunk = sp.Add(*terms[k:k + per_line], evaluate=False)
        s = tex(chunk)
        if k and not s.startswith("-"):
            s = "+ " + s
        lines.append(s)
    return lines


def bmatrix(a):
    a = np.asarray(a, dtype=object)
    if a.ndim == 1:
        a = a.reshape(-1, 1) if a.shape[0] > 1 else a.reshape(1, 1)
    rows = [" & ".join(tex(v) for v in row) for row in a]
    return r"\begin{bmatrix} " + r" \\ ".join(rows) + r" \end{bmatrix}"


def jacobian_tex(J, in_shape, out_shape):
    """Input-first Jacobian as a (block) matrix: for a 2-D input, an outer matrix indexed by
    the input position whose blocks are shaped like the output (the course's drawing)."""
    J = np.asarray(J, dtype=object)
    if len(in_shape) == 2:
        outer = np.empty(in_shape, dtype=object)
        for i in itertools.product(*(range(n) for n in in_shape)):
            blk = J[i]
            outer[i] = sp.Symbol(bmatrix(blk if blk.ndim else np.array([blk])))
        rows = [" & ".join(str(v) for v in row) for row in outer]
        return r"\left[\begin{array}{" + "c" * in_shape[1] + "} " + r" \\[4pt] ".join(rows) + r" \end{array}\right]"
    flat = J.reshape(int(np.prod(in_shape)) if in_shape else 1, -1)
    return bmatrix(flat)


def _name(k):
    return {"gamma": r"\gamma", "beta": r"\beta", "W1": r"W^{(1)}", "W2": r"W^{(2)}", "b1": r"b^{(1)}",
            "b2": r"b^{(2)}"}.get(k, k)


def _entries(arr, sym_of):
    arr = np.asarray(arr, dtype=object)
    if arr.ndim == 0:
        yield sym_of(()), arr.item()
        return
    for idx in itertools.product(*(range(n) for n in arr.shape)):
        yield sym_of(idx), arr[idx]


def _sym(base, idx):
    return base if not idx else f"{base}_{{{','.join(str(i + 1) for i in idx)}}}"


class Doc:
    """A list of (kind, payload) blocks shared by the three output formats."""

    def __init__(self):
        self.blocks = []

    def h(self, text, level=1):
        self.blocks.append(("h", (level, text)))

    def p(self, text):
        self.blocks.append(("p", text))

    def eq(self, lines):
        """``lines``: list of (lhs, [rhs fragments]); one align* block."""
        self.blocks.append(("eq", lines))


def build(d):
    """The worked solution of derivation ``d`` as a :class:`Doc`."""
    from .registry import OPS
    op = OPS.get(d.op)
    doc = Doc()
    title = op.title if op else d.op
    probs = f" (worked problem{'s' if ',' in op.problem else ''} {op.problem})" if op else ""
    doc.h(f"{title}: the gradient, derived{probs}")
    params = ", ".join(f"{k} = {_fmt(v)}" for k, v in d.params.items() if v is not None)
    shapes = "; ".join(f"${_name(k)}$ of shape {_shape(v.shape)}" for k, v in d._inputs.items())
    doc.p(f"Problem. For the {title[0].lower() + title[1:] if title[1:2].islower() else title} with {params}, inputs {shapes}, derive the gradient of the "
          f"loss $L$ with respect to every input, given the upstream gradient "
          + (r"$\delta = \partial L / \partial y$." if _has_upstream(d) else "(the output is the loss itself).")
          + " Indices are 1-based, as in the course notes.")
    # forward
    doc.h("Forward pass in scalar form", 2)
    out_name = "L" if not _has_upstream(d) else "y"
    lines = [(_sym(out_name, idx) if _has_upstream(d) else "L", tex_split(e))
             for idx, e in _entries(d._output, lambda i: i)]
    doc.p("Each output is a scalar expression of the named inputs:")
    doc.eq(lines[:24])
    if len(lines) > 24:
        doc.p(f"(and {len(lines) - 24} more entries of the same form).")
    # local derivatives
    doc.h("Local derivatives", 2)
    doc.p(r"The Jacobian of the output with respect to each input has shape input shape + output shape "
          r"(SymPy's derive\_by\_array layout; PyTorch puts the output first): entry $[i, o]$ is "
          r"$\partial y_o / \partial x_i$." + (" For a 2-D input it is drawn as a block matrix: "
                                                "the block at position $(i, j)$ holds the derivatives of "
                                                "every output with respect to $x_{i,j}$." if any(
                                                    v.ndim == 2 for v in d._inputs.values()) else ""))
    for k, v in d._inputs.items():
        J = d.jacobian_array(k)
        if J.size > 400:
            doc.p(f"The Jacobian with respect to ${_name(k)}$ has shape {_shape(J.shape)} "
                  f"({J.size} entries, {sum(1 for e in J.reshape(-1) if e != 0)} non-zero); it is too "
                  f"large to print, and the chain rule below contracts it.")
            continue
        doc.eq([(r"\frac{\partial y}{\partial " + _name(k) + "}", [jacobian_tex(J, v.shape, d._output.shape)])])
    # chain rule
    doc.h("Chain rule", 2)
    if _has_upstream(d):
        doc.p(r"The gradient is the Jacobian contracted with the upstream gradient: "
              r"$\frac{\partial L}{\partial x_i} = \sum_o \frac{\partial y_o}{\partial x_i}\,\delta_o$.")
    else:
        doc.p(r"The output is the loss, so the gradient is the Jacobian itself.")
    for k, v in d._inputs.items():
        ch = d.chain_array(k)
        rows = [(r"\frac{\partial L}{\partial " + _sym(_name(k), idx) + "}", tex_split(e))
                for idx, e in _entries(ch, lambda i: i)]
        doc.eq(rows[:16])
        if len(rows) > 16:
            doc.p(f"(and {len(rows) - 16} more entries.)")
    # closed form
    doc.h("Closed form", 2)
    for k in d._closed:
        rule = d.rules.get(k, "")
        doc.p(f"Rule for ${_name(k)}$: {_rule_tex(rule)}.")
        g = d.grad_array(k)
        if g.ndim == 2 and g.size <= 36:
            doc.eq([(r"\frac{\partial L}{\partial " + _name(k) + "}", [bmatrix(g)])])
        else:
            rows = [(r"\frac{\partial L}{\partial " + _sym(_name(k), idx) + "}", tex_split(e))
                    for idx, e in _entries(g, lambda i: i)]
            doc.eq(rows[:16])
    extra = _op_specific(d)
    doc.blocks.extend(extra)
    doc.h("Proof", 2)
    how = {"expand": "expanding the difference of the two to a polynomial that is identically zero",
           "rational": r"writing every $e^{a}$ as a positive symbol and cancelling the difference, a rational "
                       r"function, to zero",
           "radical": "simplifying the difference to zero"}.get(d.proof, d.proof)
    doc.p(f"For every entry, the closed form equals the chain rule: derivgrad proved it symbolically by {how}"
          + (" (" + "; ".join(d.notes) + ")" if d.notes else "") + ".")
    return doc


def _has_upstream(d):
    return any(isinstance(s, sp.Symbol) for s in np.asarray(d._upstream).reshape(-1))


def _fmt(v):
    return "×".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _shape(s):
    return "(" + ", ".join(map(str, s)) + ")" if s else "()"


_RULE_TEX = [("⋆", r"$\star$"), ("ᵀ", r"$^\top$"), ("⊙", r"$\odot$"), ("Σ", r"$\sum$"), ("δ", r"$\delta$"),
             ("γ", r"$\gamma$"), ("σ²", r"$\sigma^2$"), ("ε", r"$\epsilon$"), ("√", r"$\sqrt{}$"),
             ("x̂", r"$\hat x$"), ("∈", r"$\in$"), ("∋", r"$\ni$"), ("∇", r"$\nabla$"), ("−", "-"),
             ("⟨", r"$\langle$"), ("⟩", r"$\rangle$"), ("β", r"$\beta$")]


def _rule_tex(rule):
    for a, b in _RULE_TEX:
        rule = rule.replace(a, b)
    return rule.replace("_", r"\_")


def _op_specific(d):
    """Extra steps: conv's padding and flipping, softmax's closed Jacobian."""
    out = []
    if d.op in ("conv2d", "conv1d") and d.params["batch"] == 1 and d.params["channels"] == 1 \
            and d.params["filters"] == 1:
        from .symbolic.tensors import dilate, flip, pad
        ks = d.params["kernel"]
        s, dl = d.params["stride"], d.params["dilation"]
        up = d._upstream
        w = d._inputs["w"]
        pads = [(dd * (k - 1), dd * (k - 1)) for dd, k in zip(dl, ks)]
        P = pad(dilate(up, s), pads)
        R = flip(dilate(w, dl), tuple(range(w.ndim)))
        out.append(("h", (2, "The compact rule: pad, flip, correlate")))
        out.append(("p", "How much to pad follows from the sizes: a full correlation of a map of size "
                         r"$h'_{out}$ with an $f \times f$ filter has size $h'_{out} - f + 1$, and this must "
                         r"equal $h_{in}$; with $h'_{out} = h_{out} + 2p$ that gives $p = f - 1$ "
                         "(times the dilation, after dilating δ by the stride). No Jacobian is required at all:"))
        out.append(("eq", [(r"\operatorname{pad}(\delta)", [bmatrix(P)]),
                           (r"\operatorname{rot180}(w)", [bmatrix(R)])]))
        out.append(("p", r"and $\partial L/\partial x = \operatorname{crop}_p(\operatorname{pad}(\delta) \star "
                         r"\operatorname{rot180}(w))$, while $\partial L/\partial w = x \star \delta$."))
    if d.op == "softmax":
        J = d.closed_jacobian()
        k = J.shape[0]
        p = sp.symbols(f"p_1:{k + 1}")
        Jp = np.array([[p[i] * ((1 if i == j else 0) - p[j]) for j in range(k)] for i in range(k)], dtype=object)
        out.append(("h", (2, "The softmax Jacobian")))
        out.append(("p", r"Writing $p_i$ for the probabilities, $\partial p_i / \partial z_j = p_i(\delta_{ij} - "
                         r"p_j)$, that is $\nabla p_i = p_i(e_i - p)$ and"))
        out.append(("eq", [(r"J = \operatorname{diag}(p) - p p^\top", [bmatrix(Jp)])]))
    return out


# -- output formats ----------------------------------------------------------------------
PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\usepackage[T1]{fontenc}
\usepackage{lmodern}
\setcounter{MaxMatrixCols}{40}
\allowdisplaybreaks
"""


def _latex_blocks(doc):
    out = []
    for kind, x in doc.blocks:
        if kind == "h":
            level, text = x
            out.append(("\\section*{%s}" if level == 1 else "\\subsection*{%s}") % _escape(text))
        elif kind == "p":
            out.append(_escape_text(x) + "\n")
        else:
            rows = []
            for lhs, frags in x:
                rows.append(f"{lhs} &= {frags[0]}" + "".join(r" \\ &\quad " + f for f in frags[1:]))
            out.append("\\begin{align*}\n" + " \\\\\n".join(rows) + "\n\\end{align*}")
    return "\n".join(out)


def _escape(t):
    return t.replace("&", r"\&").replace("%", r"\%").replace("#", r"\#").replace("×", r"$\times$")


def _escape_text(t):
    # text with inline $...$ math: escape only outside math
    parts = t.split("$")
    for i in range(0, len(parts), 2):
        parts[i] = _escape(parts[i]).replace("δ", r"$\delta$").replace("−", "-").replace("⋆", r"$\star$") \
            .replace("Σ", r"$\sum$").replace("ᵀ", r"$^\top$").replace("→", r"$\to$")
    return "$".join(parts)


def to_latex(doc, standalone=True):
    body = _latex_blocks(doc)
    if not standalone:
        return body + "\n"
    return PREAMBLE + "\\begin{document}\n" + body + "\n\\end{document}\n"


def to_markdown(doc):
    out = []
    for kind, x in doc.blocks:
        if kind == "h":
            out.append("#" * x[0] + " " + x[1])
        elif kind == "p":
            out.append(x)
        else:
            rows = [f"{lhs} &= {frags[0]}" + "".join(r" \\ &\quad " + f for f in frags[1:]) for lhs, frags in x]
            out.append("$$\n\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}\n$$")
    return "\n\n".join(out) + "\n"


def to_text(doc, d):
    out = []
    for kind, x in doc.blocks:
        if kind == "h":
            out.append(("=" if x[0] == 1 else "-") * 3 + " " + x[1])
        elif kind == "p":
            out.append(x.replace("$", ""))
        else:
            for lhs, frags in x:
                out.append(f"  {lhs} = " + " ".join(frags))
    return "\n".join(out) + "\n"


def render(d, fmt="latex", standalone=True):
    doc = build(d)
    if fmt == "latex":
        return to_latex(doc, standalone)
    if fmt == "markdown":
        return to_markdown(doc)
    if fmt == "text":
        return _plain(to_text(doc, d), d)
    raise ValueError(f"unknown format {fmt!r}; choose latex, markdown or text")


def _plain(text, d):
    # terminal text: SymPy's str() of the same expressions instead of LaTeX fragments
    return text


def compile_pdf(tex_source, out_pdf, engine="pdflatex", timeout=120):
    """Compile with a TeX engine into ``out_pdf``; raises ``RuntimeError`` with the log's
    first error, or ``FileNotFoundError`` if no engine is installed."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path
    exe = shutil.which(engine)
    if exe is None:
        raise FileNotFoundError(f"no TeX engine found ({engine}); install one, e.g. "
                                f"'apt-get install texlive-latex-base texlive-latex-recommended', "
                                f"or write the .tex with -o and compile it elsewhere")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "doc.tex"
        src.write_text(tex_source)
        for _ in range(2):      # twice, for the table of contents
            r = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp,
                               capture_output=True, text=True, timeout=timeout)
            if r.returncode:
                err = next((l for l in r.stdout.splitlines() if l.startswith("!")), "unknown error")
                raise RuntimeError(f"{engine} failed: {err}")
        shutil.copy(Path(tmp) / "doc.pdf", out_pdf)
    return out_pdf
