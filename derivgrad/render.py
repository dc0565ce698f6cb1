r"""Worked solutions from derivations: LaTeX (standalone or fragment), Markdown, text.

A document follows the course's order: the problem, the forward pass in scalar form, the
local derivatives (4-D Jacobians as block matrices, input-first layout), the chain rule as
a contraction with the upstream gradient δ, the closed form, and the compact rule with
what :meth:`Derivation.verify` proved.  Every formula is printed from the SymPy object it
states, by one printer (:func:`tex`), so text and mathematics cannot drift apart.
"""

import itertools
import re

import numpy as np
import sympy as sp

MAX_TERMS_PER_LINE = 4
MAX_ENTRY_CHARS = 60  # a matrix whose entries print longer than this is listed entry by entry
MAX_LINE_CHARS = 300  # a single term longer than this cannot be broken: summarised instead
LINE_CHARS = 140  # LaTeX characters that fit one displayed line of subscripted math


def tex(e):
    """LaTeX of one expression: SymPy's printer, products without ``\\cdot`` noise."""
    return sp.latex(e, mul_symbol=None)


def _too_long(e):
    n = len(sp.Add.make_args(e))
    return r"\text{(an expression of %d term%s, too long to print; verify() compares it)}" % (
        n,
        "s" * (n > 1),
    )


def tex_split(e, per_line=MAX_TERMS_PER_LINE):
    """A long sum broken over ``align*`` lines (returns a list of line fragments); an
    expression whose single terms are too long for a line is summarised, not printed."""
    whole = tex(e)
    if len(whole) <= LINE_CHARS:
        return [whole]
    if isinstance(e, sp.Mul):
        # a product with a long sum inside: keep the other factors, break the sum
        adds = [f for f in e.args if isinstance(f, sp.Add)]
        if adds:
            A = max(adds, key=lambda f: len(tex(f)))
            rest = sp.Mul(*[f for f in e.args if f is not A])
            inner = tex_split(A, per_line)
            if len(inner) > 1 and len(tex(rest)) <= LINE_CHARS:
                pre = "" if rest == 1 else ("-" if rest == -1 else tex(rest) + " ")
                return [pre + r"\Big(" + inner[0]] + inner[1:-1] + [inner[-1] + r"\Big)"]
    if not isinstance(e, sp.Add):
        return [whole] if len(whole) <= MAX_LINE_CHARS else [_too_long(e)]
    terms = list(sp.Add.make_args(e))
    terms = sorted(terms, key=sp.default_sort_key)
    lines = []
    k = 0
    while k < len(terms):
        # as many terms as fit on a line, at most per_line
        m = 1
        while (
            k + m < len(terms)
            and m < per_line
            and len(tex(sp.Add(*terms[k : k + m + 1], evaluate=False))) <= LINE_CHARS
        ):
            m += 1
        chunk = sp.Add(*terms[k : k + m], evaluate=False)
        s = tex(chunk)
        if len(s) > MAX_LINE_CHARS:
            sub = tex_split(terms[k], per_line) if m == 1 else None
            if not sub or len(sub) == 1:
                return [_too_long(e)]
            lines.extend(
                ("+ " + sub[0] if k and not sub[0].startswith("-") else sub[0],) + tuple(sub[1:])
            )
            k += 1
            continue
        if k and not s.startswith("-"):
            s = "+ " + s
        lines.append(s)
        k += m
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
        return (
            r"\left[\begin{array}{"
            + "c" * in_shape[1]
            + "} "
            + r" \\[2.2ex] ".join(rows)
            + r" \end{array}\right]"
        )
    flat = J.reshape(int(np.prod(in_shape)) if in_shape else 1, -1)
    return bmatrix(flat)


def _name(k):
    return {
        "gamma": r"\gamma",
        "beta": r"\beta",
        "W1": r"W^{(1)}",
        "W2": r"W^{(2)}",
        "b1": r"b^{(1)}",
        "b2": r"b^{(2)}",
    }.get(k, k)


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

    if d.op == "lenet":
        return build_lenet(d)
    op = OPS.get(d.op)
    doc = Doc()
    title = op.title if op else d.op
    probs = f" (worked problem{'s' if ',' in op.problem else ''} {op.problem})" if op else ""
    doc.h(f"{title}: the gradient, derived{probs}")
    params = ", ".join(f"{k} = {_fmt(v, k)}" for k, v in d.params.items() if v is not None)
    shapes = "; ".join(f"${_name(k)}$ of shape {_shape(v.shape)}" for k, v in d._inputs.items())
    doc.p(
        f"Problem. For the {title[0].lower() + title[1:] if title[1:2].islower() else title} with {params}, inputs {shapes}, derive the gradient of the "
        f"loss $L$ with respect to every input, given the upstream gradient "
        + (
            r"$\delta = \partial L / \partial y$."
            if _has_upstream(d)
            else "(the output is the loss itself)."
        )
        + " Indices are 1-based, as in the course notes."
    )
    # forward
    doc.h("Forward pass in scalar form", 2)
    out_name = "L" if not _has_upstream(d) else "y"
    lines = [
        (_sym(out_name, idx) if _has_upstream(d) else "L", tex_split(e))
        for idx, e in _entries(d._output, lambda i: i)
    ]
    doc.p("Each output is a scalar expression of the named inputs:")
    doc.eq(lines[:24])
    if len(lines) > 24:
        doc.p(f"(and {len(lines) - 24} more entries of the same form).")
    # local derivatives
    doc.h("Local derivatives", 2)
    doc.p(
        r"The Jacobian of the output with respect to each input has shape input shape + output shape "
        r"(the layout of SymPy's \texttt{derive\_by\_array}; PyTorch puts the output first): entry $[i, o]$ is "
        r"$\partial y_o / \partial x_i$."
        + (
            " For a 2-D input it is drawn as a block matrix: "
            "the block at position $(i, j)$ holds the derivatives of "
            "every output with respect to $x_{i,j}$."
            if any(v.ndim == 2 for v in d._inputs.values())
            else ""
        )
    )
    for k, v in d._inputs.items():
        J = d.jacobian_array(k)
        if max(len(tex(e)) for e in J.reshape(-1)) > MAX_ENTRY_CHARS and J.size <= 400:
            nz = [
                (
                    r"\frac{\partial y_{%s}}{\partial %s}"
                    % (
                        ",".join(str(i + 1) for i in idx[v.ndim :]) or "",
                        _sym(_name(k), idx[: v.ndim]),
                    ),
                    tex_split(e),
                )
                for idx, e in _entries(J, lambda i: i)
                if e != 0
            ]
            doc.p(
                f"The non-zero entries of the Jacobian with respect to ${_name(k)}$ (shape {_shape(J.shape)}):"
            )
            doc.eq(nz[:12])
            if len(nz) > 12:
                doc.p(f"(and {len(nz) - 12} more non-zero entries.)")
            continue
        if J.size > 400:
            doc.p(
                f"The Jacobian with respect to ${_name(k)}$ has shape {_shape(J.shape)} "
                f"({J.size} entries, {sum(1 for e in J.reshape(-1) if e != 0)} non-zero); it is too "
                f"large to print, and the chain rule below contracts it."
            )
            continue
        doc.eq(
            [
                (
                    r"\frac{\partial y}{\partial " + _name(k) + "}",
                    [jacobian_tex(J, v.shape, d._output.shape)],
                )
            ]
        )
    # chain rule
    doc.h("Chain rule", 2)
    if _has_upstream(d):
        doc.p(
            r"The gradient is the Jacobian contracted with the upstream gradient: "
            r"$\frac{\partial L}{\partial x_i} = \sum_o \frac{\partial y_o}{\partial x_i}\,\delta_o$."
        )
    else:
        doc.p(r"The output is the loss, so the gradient is the Jacobian itself.")
    for k, v in d._inputs.items():
        ch = d.chain_array(k)
        rows = [
            (r"\frac{\partial L}{\partial " + _sym(_name(k), idx) + "}", tex_split(e))
            for idx, e in _entries(ch, lambda i: i)
        ]
        doc.eq(rows[:16])
        if len(rows) > 16:
            doc.p(f"(and {len(rows) - 16} more entries.)")
    # closed form
    doc.h("Closed form", 2)
    for k in d._closed:
        rule = d.rules.get(k, "")
        doc.p(f"Rule for ${_name(k)}$: {_rule_tex(rule)}.")
        g = d.grad_array(k)
        if (
            g.ndim == 2
            and g.size <= 36
            and max(len(tex(e)) for e in g.reshape(-1)) <= MAX_ENTRY_CHARS
        ):
            doc.eq([(r"\frac{\partial L}{\partial " + _name(k) + "}", [bmatrix(g)])])
        else:
            rows = [
                (r"\frac{\partial L}{\partial " + _sym(_name(k), idx) + "}", tex_split(e))
                for idx, e in _entries(g, lambda i: i)
            ]
            doc.eq(rows[:16])
    extra = _op_specific(d)
    doc.blocks.extend(extra)
    doc.h("Proof", 2)
    how = {
        "expand": "expanding the difference of the two to a polynomial that is identically zero",
        "rational": r"writing every $e^{a}$ as a positive symbol and cancelling the difference, a rational "
        r"function, to zero",
        "radical": r"writing $\sqrt{\sigma^2 + \epsilon}$ as a positive symbol $S$ (the chain rule "
        r"differentiates $\sigma^2$ explicitly) and expanding the numerator of the difference "
        r"to zero",
    }.get(d.proof, d.proof)
    doc.p(
        f"For every entry, the closed form equals the chain rule: derivgrad proved it symbolically by {how}"
        + (" (" + "; ".join(d.notes) + ")" if d.notes else "")
        + "."
    )
    return doc


def build_lenet(d):
    """The network, layer by layer: forward in scalar form, each δ of the backward pass
    written out, the parameter gradients, and the proof against the chain rule through the
    whole network."""
    doc = Doc()
    P, X = d.params, d.extra
    doc.h("The course LeNet, layer by layer (worked problem 12)")
    sh = X["shapes"]
    doc.p(
        f"Problem. A reduced instance of the homework network: input ${P['input'][0]}\\times{P['input'][1]}$, "
        f"conv {P['filters']}@${P['kernel']}\\times{P['kernel']}$ with bias → max-pool $2\\times2$/2 → flatten "
        f"({sh['flat'][0]}) → fc {P['hidden']} → ReLU → fc {P['classes']} → softmax cross-entropy with label "
        f"$y = {P['label']}$. Derive the gradient of $L$ with respect to every parameter."
    )
    doc.h("Forward pass in scalar form", 2)
    V = X["display"]
    conv = [(_sym("z", i), tex_split(e)) for i, e in _entries(X["conv"], lambda i: i)]
    doc.p("Convolution (one input channel, so the sum runs over the window only):")
    doc.eq(conv[:8])
    if len(conv) > 8:
        doc.p(f"(and {len(conv) - 8} more entries of the same form).")
    doc.p(
        r"Max pooling $m$, flattening $f = \operatorname{vec}(m)$, the hidden layer $h$, $a = \operatorname{relu}(h)$, "
        r"the logits $s$, $p = \operatorname{softmax}(s)$ and $L = -\log p_y$:"
    )
    rows = [(_sym("m", i), [tex(e)]) for i, e in _entries(V["pooled"], lambda i: i)]
    rows += [(_sym("h", i), tex_split(e)) for i, e in _entries(V["h_expr"], lambda i: i)]
    rows += [(_sym("s", i), tex_split(e)) for i, e in _entries(V["s_expr"], lambda i: i)]
    rows += [("L", [r"-\log p_{%d} = -s_{%d} + \log \sum_j e^{s_j}" % (P["label"], P["label"])])]
    doc.eq(rows)
    doc.h("Backward pass, layer by layer", 2)
    doc.p(
        r"Each $\delta$ is the gradient of $L$ with respect to that layer's output, from the end to the beginning "
        r"(read it in reverse order, as the notes advise):"
    )
    D = V["deltas"]
    names = [
        ("z", r"\delta^{(s)}", "logits: $p - e_y$"),
        ("a", r"\delta^{(a)}", r"$W^{(2)\top} \delta^{(s)}$"),
        ("h", r"\delta^{(h)}", r"$\delta^{(a)} \odot \mathbf{1}[h > 0]$"),
        ("f", r"\delta^{(f)}", r"$W^{(1)\top} \delta^{(h)}$, reshaped to the pooled maps"),
        ("conv", r"\delta^{(z)}", "routed to the first maximum of each pooling window"),
    ]
    for key, sym, what in names:
        doc.p(f"${sym}$: {what}.")
        doc.eq([(_sym(sym, i), tex_split(e)) for i, e in _entries(D[key], lambda i: i)][:12])
    doc.h("Parameter gradients", 2)
    for k in d._closed:
        doc.p(f"${_name(k)}$: {_rule_tex(d.rules[k])}.")
    doc.h("Parameter counts of the full network", 2)
    doc.p(
        "With the homework's sizes (64×1×28×28 input, 20@5×5, 2×2 pooling, 2880 → 500 → 10): conv "
        "20·25 + 20 = 520, fc1 2880·500 + 500 = 1,440,500, fc2 500·10 + 10 = 5,010; 1,446,030 in all."
    )
    doc.h("Proof", 2)
    doc.p(
        "derivgrad differentiated $L$ directly with respect to every parameter (the chain rule through the whole "
        "network, as SymPy's derivative of one expression) and proved it equal to the layer-by-layer result above, "
        "entry by entry, by writing every $e^{a}$ as a positive symbol and cancelling the difference to zero."
    )
    return doc


def _has_upstream(d):
    return any(isinstance(s, sp.Symbol) for s in np.asarray(d._upstream).reshape(-1))


def _fmt(v, key=""):
    """Sizes print as a×b; a hyper-parameter equal on both axes prints as one number."""
    if isinstance(v, tuple):
        if key not in ("input", "kernel") and len(set(v)) == 1:
            return str(v[0])
        return "×".join(map(str, v))
    return str(v)


def _shape(s):
    return "(" + ", ".join(map(str, s)) + ")" if s else "()"


_RULE_TEX = [
    ("⋆", r"\star "),
    ("ᵀ", r"^\top "),
    ("⊙", r"\odot "),
    ("Σ", r"\sum "),
    ("δ", r"\delta "),
    ("γ", r"\gamma "),
    ("σ²", r"\sigma^2 "),
    ("ε", r"\epsilon "),
    ("√", r"\sqrt"),
    ("x̂", r"\hat x "),
    ("∈", r"\in "),
    ("∋", r"\ni "),
    ("∇", r"\nabla "),
    ("−", "-"),
    ("⟨", r"\langle "),
    ("⟩", r"\rangle "),
    ("β", r"\beta "),
    ("1[", r"\mathbf{1}["),
]


def _rule_tex(rule):
    """A rule from ``Derivation.rules`` (Unicode) as inline LaTeX: the formula in math mode,
    a trailing explanation (after a comma or in parentheses) as text."""
    m = re.match(r"^(.*?)(?:,\s*|\s+\()((?:summed|routed|for|each|spread|with|the)[^)]*)\)?$", rule)
    head, tail = (m.group(1), m.group(2)) if m else (rule, "")
    head = head.replace("√(σ²+ε)", r"\sqrt{\sigma^2+\epsilon}").replace("·", r"\cdot ")
    head = re.sub(r"\bW([12])ᵀ", r"W^{(\1)\\top}", head)
    head = re.sub(r"\bW([12])", r"W^{(\1)}", head)
    for a, b in _RULE_TEX:
        head = head.replace(a, b)
    head = re.sub(
        r"\b(crop|pad|dilate|rot180|reshape|mean)_([a-z])\(", r"\\operatorname{\1}_{\2}(", head
    )
    head = re.sub(
        r"\b(crop|pad|dilate|rot180|reshape|mean|diag|relu)\(", r"\\operatorname{\1}(", head
    )
    head = re.sub(r"\bargmax_([a-z])", r"\\operatorname{argmax}_{\1}", head)
    head = re.sub(r"_(?!\{)([A-Za-z0-9]+)", r"_{\1}", head)
    head = (
        head.replace("dX", r"\mathrm{d}X")
        .replace("dW", r"\mathrm{d}W")
        .replace("db", r"\mathrm{d}b")
    )
    out = f"${head.strip()}$"
    if tail:
        t = tail
        for a, b in _RULE_TEX:
            t = t.replace(a, f"${b.strip()}$")
        t = re.sub(r"\b([a-z]) \$\\ni\$ ([a-z])\b", r"$\1 \\ni \2$", t)
        out += f", {t}"
    return out


def _op_specific(d):
    """Extra steps: conv's padding and flipping, softmax's closed Jacobian."""
    out = []
    if (
        d.op in ("conv2d", "conv1d")
        and d.params["batch"] == 1
        and d.params["channels"] == 1
        and d.params["filters"] == 1
    ):
        from .symbolic.conv import full_upstream, rotated_filter

        ks, s, dl = d.params["kernel"], d.params["stride"], d.params["dilation"]
        P = full_upstream(d._upstream, ks, s, dl)  # the rule's own steps, not a copy
        R = rotated_filter(d._inputs["w"], dl)
        out.append(("h", (2, "The compact rule: pad, flip, correlate")))
        out.append(
            (
                "p",
                "How much to pad follows from the sizes: a full correlation of a map of size "
                r"$h'_{out}$ with an $f \times f$ filter has size $h'_{out} - f + 1$, and this must "
                r"equal $h_{in}$; with $h'_{out} = h_{out} + 2p$ that gives $p = f - 1$ "
                "(times the dilation, after dilating δ by the stride). No Jacobian is required at all:",
            )
        )
        out.append(
            (
                "eq",
                [
                    (r"\operatorname{pad}(\delta)", [bmatrix(P)]),
                    (r"\operatorname{rot180}(w)", [bmatrix(R)]),
                ],
            )
        )
        out.append(
            (
                "p",
                r"and $\partial L/\partial x = \operatorname{crop}_p(\operatorname{pad}(\delta) \star "
                r"\operatorname{rot180}(w))$, while $\partial L/\partial w = x \star \delta$.",
            )
        )
    if d.op == "softmax":
        J = d.closed_jacobian()
        k = J.shape[0]
        p = sp.symbols(f"p_1:{k + 1}")
        Jp = np.array(
            [[p[i] * ((1 if i == j else 0) - p[j]) for j in range(k)] for i in range(k)],
            dtype=object,
        )
        out.append(("h", (2, "The softmax Jacobian")))
        out.append(
            (
                "p",
                r"Writing $p_i$ for the probabilities, $\partial p_i / \partial z_j = p_i(\delta_{ij} - "
                r"p_j)$, that is $\nabla p_i = p_i(e_i - p)$ and",
            )
        )
        out.append(("eq", [(r"J = \operatorname{diag}(p) - p p^\top", [bmatrix(Jp)])]))
    return out


# -- output formats ----------------------------------------------------------------------
PREAMBLE = r"""\documentclass[11pt]{article}
\usepackage[margin=2cm]{geometry}
\usepackage{amsmath,amssymb}
\setcounter{MaxMatrixCols}{40}
% Unicode that prose may carry (math is always printed as LaTeX)
\DeclareUnicodeCharacter{221E}{\ensuremath{\infty}}
\DeclareUnicodeCharacter{2212}{\ensuremath{-}}
\DeclareUnicodeCharacter{2208}{\ensuremath{\in}}
\DeclareUnicodeCharacter{220B}{\ensuremath{\ni}}
\DeclareUnicodeCharacter{00B7}{\ensuremath{\cdot}}
\DeclareUnicodeCharacter{00D7}{\ensuremath{\times}}
\DeclareUnicodeCharacter{2192}{\ensuremath{\to}}
\DeclareUnicodeCharacter{2264}{\ensuremath{\leq}}
\DeclareUnicodeCharacter{2265}{\ensuremath{\geq}}
\DeclareUnicodeCharacter{03B4}{\ensuremath{\delta}}
\DeclareUnicodeCharacter{22C6}{\ensuremath{\star}}
\allowdisplaybreaks
"""


def _align_rows(rows):
    """``(lhs, [fragments])`` pairs as align rows, continuation lines indented."""
    return " \\\\\n".join(
        f"{lhs} &= {frags[0]}" + "".join(r" \\ &\quad " + f for f in frags[1:])
        for lhs, frags in rows
    )


def _latex_blocks(doc, numbered=False):
    out = []
    for kind, x in doc.blocks:
        if kind == "h":
            level, text = x
            if numbered and level == 1:
                out.append("\\section{%s}" % _escape(text))
            else:
                out.append(
                    ("\\section*{%s}" if level == 1 else "\\subsection*{%s}") % _escape(text)
                )
        elif kind == "p":
            out.append(_escape_text(x) + "\n")
        else:
            out.append("\\begin{align*}\n" + _align_rows(x) + "\n\\end{align*}")
    return "\n".join(out)


def _escape(t):
    t = re.sub(r"(?<!\\)_", r"\\_", t)
    return t.replace("&", r"\&").replace("%", r"\%").replace("#", r"\#").replace("×", r"$\times$")


def _escape_text(t):
    # text with inline $...$ math: escape only outside math
    parts = t.split("$")
    for i in range(0, len(parts), 2):
        parts[i] = (
            _escape(parts[i])
            .replace("δ", r"$\delta$")
            .replace("−", "-")
            .replace("⋆", r"$\star$")
            .replace("Σ", r"$\sum$")
            .replace("ᵀ", r"$^\top$")
            .replace("→", r"$\to$")
            .replace("·", r"$\cdot$")
            .replace("∈", r"$\in$")
            .replace("≥", r"$\geq$")
            .replace("ε", r"$\epsilon$")
        )
    return "$".join(parts)


def to_latex(doc, standalone=True, numbered=False):
    body = _latex_blocks(doc, numbered)
    if not standalone:
        return body + "\n"
    return PREAMBLE + "\\begin{document}\n" + body + "\n\\end{document}\n"


def _prose_md(t):
    # LaTeX text commands outside math mean nothing on GitHub: code spans and plain text
    t = re.sub(r"\\texttt\{(.*?)\}", lambda m: "`" + m.group(1).replace("\\_", "_") + "`", t)
    parts = t.split("$")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("\\_", "_")
    return "$".join(parts)


def to_markdown(doc):
    out = []
    for kind, x in doc.blocks:
        if kind == "h":
            out.append("#" * x[0] + " " + x[1])
        elif kind == "p":
            out.append(_prose_md(x))
        else:
            out.append("$$\n\\begin{aligned}\n" + _align_rows(x) + "\n\\end{aligned}\n$$")
    return "\n\n".join(out) + "\n"


def to_text(doc):
    out = []
    for kind, x in doc.blocks:
        if kind == "h":
            out.append(("=" if x[0] == 1 else "-") * 3 + " " + x[1])
        elif kind == "p":
            out.append(_prose_md(x).replace("$", "").replace("`", ""))
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
        return to_text(doc)
    raise ValueError(f"unknown format {fmt!r}; choose latex, markdown or text")


def compile_pdf(tex_source, out_pdf, engine="pdflatex", timeout=120):
    """Compile with a TeX engine into ``out_pdf``; raises ``RuntimeError`` with the log's
    first error, or ``FileNotFoundError`` if no engine is installed."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    exe = shutil.which(engine)
    if exe is None:
        raise FileNotFoundError(
            f"no TeX engine found ({engine}); install one, e.g. "
            f"'apt-get install texlive-latex-base texlive-latex-recommended', "
            f"or write the .tex with -o and compile it elsewhere"
        )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "doc.tex"
        src.write_text(tex_source)
        for _ in range(2):  # twice, for the table of contents
            r = subprocess.run(
                [exe, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if r.returncode:
                err = next((l for l in r.stdout.splitlines() if l.startswith("!")), "unknown error")
                raise RuntimeError(f"{engine} failed: {err}")
        shutil.copy(Path(tmp) / "doc.pdf", out_pdf)
    return out_pdf
