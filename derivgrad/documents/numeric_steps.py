r"""The numbers of a numeric instance, carried through every step of a worked solution.

:func:`derivgrad.documents.render.build` calls :func:`at` at a few marked points (after the problem,
the forward pass, the local derivatives, the chain rule, the closed form, and at the end);
each call returns document blocks, none when the derivation has no values.  The steps are
printed from the same SymPy objects as the symbolic document, with the numbers written in
place of the symbols (``1 \cdot 1 + 0 \cdot 2 + (-1) \cdot 0 + 2 \cdot (-1) = -1``), so the
two cannot disagree; exact rationals stay exact, other numbers print to six digits.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping

import numpy as np
import sympy as sp

from ..symbolic.derivation import Derivation
from ..symbolic.reader import as_expr
from .document import (
    LINE_CHARS,
    MAX_ENTRY_CHARS,
    Block,
    bmatrix,
    entries,
    has_upstream,
    indexed,
    jacobian_tex,
    tex,
    tex_name,
)
from .instance import (
    UPSTREAM,
    complete,
    evaluate,
    failed_checks,
    kernel_comparison,
    substitutions,
    value_names,
)

MAX_ROWS = 16  # rows of numbers per array before the rest is summarised
MAX_SUM_TERMS = 6  # terms of a written-out sum per displayed line


def num_tex(v: sp.Expr) -> str:
    """A number (or a partly numeric expression): exact when rational, else six digits."""
    v = as_expr(v)
    if v.is_Rational or (v.free_symbols and not v.has(sp.Float)):
        return tex(v)
    return tex(v.evalf(6))


def _factor(v: sp.Expr) -> str:
    """A number as a factor of a product: parenthesised when negative or compound."""
    s = num_tex(v)
    return f"({s})" if s.startswith("-") or " " in s.strip() else s


def substituted_tex(e: sp.Expr, subs: Mapping[sp.Symbol, sp.Expr]) -> str:
    """``e`` printed with each given symbol replaced by its number, nothing evaluated."""
    names = {s: _factor(v) for s, v in subs.items() if s in e.free_symbols}
    return sp.latex(e, mul_symbol="dot", symbol_names=names)


def array_tex(a: np.ndarray) -> str:
    """An array of numbers as a matrix: unit axes dropped, more than two axes as rows of the
    last axis (so a batch × channel × h × w tensor reads row by row)."""
    a = np.asarray(a, dtype=object)
    squeezed = a.reshape([n for n in a.shape if n != 1]) if a.size > 1 else a.reshape(1)
    if squeezed.ndim > 2:
        squeezed = squeezed.reshape(-1, squeezed.shape[-1])
    return bmatrix(np.vectorize(lambda v: sp.Symbol(num_tex(v)), otypes=[object])(squeezed))


def _symbol_tex(name: str) -> str:
    return r"\delta" if name == UPSTREAM else tex_name(name)


def _given(d: Derivation) -> list[Block]:
    given = [n for n in value_names(d) if n in d.values]
    left = [n for n in value_names(d) if n not in d.values]
    text = (
        "A numeric instance: the numbers below are carried through every step "
        "(integers and fractions stay exact, other numbers print to six significant digits)"
    )
    dropped = [
        f"${_symbol_tex(n)}$ ({'×'.join(map(str, np.shape(d.values[n])))})"
        for n in given
        if np.ndim(d.values[n]) > 2 and 1 in np.shape(d.values[n])
    ]
    if dropped:
        text += (
            "; " + ", ".join(dropped) + " printed with the axes of length 1 left out, "
            "the last axis along each row"
        )
    if left:
        text += "; " + ", ".join(f"${_symbol_tex(n)}$" for n in left)
        text += " stays symbolic" if len(left) == 1 else " stay symbolic"
    rows = [(_symbol_tex(n), [array_tex(d.values[n])]) for n in given]
    return [("p", text + "."), ("eq", rows)]


def _forward(d: Derivation) -> list[Block]:
    subs = substitutions(d)
    loss = not any(isinstance(s, sp.Symbol) for s in np.asarray(d._upstream).reshape(-1))
    rows = []
    for idx, e in entries(d._output, lambda i: i):
        lhs = "L" if loss else indexed("y", idx)
        rows.append((lhs, _written_out(substituted_tex(e, subs), e.xreplace(subs))))
    return _capped("With the numbers, the forward pass gives:", rows) + _named(d)


def _named(d: Derivation) -> list[Block]:
    """The values of the named intermediates the document prints in place of what they stand
    for (softmax's ``p_i``), so a reader can check each later step that uses them."""
    subs = substitutions(d)
    groups: dict[str, list[tuple[sp.Symbol, sp.Expr]]] = {}
    for e, s in (d.extra.get("print_as") or {}).items():
        if isinstance(s, sp.Symbol):
            groups.setdefault(s.name.split("_")[0], []).append((s, as_expr(e)))
    if not groups:
        return []
    rows = []
    for base, named in groups.items():
        values = np.array([e.xreplace(subs).doit() for _, e in named], dtype=object)
        rows.append((base, [array_tex(values)]))
    return [("p", "The named intermediates at these numbers:"), ("eq", rows)]


def _written_out(written: str, value: sp.Expr) -> list[str]:
    """``written = value`` as line fragments; a written-out form too long to read is left out."""
    v = num_tex(value)
    if written == v or len(written) > 3 * LINE_CHARS:
        return [v]
    if len(written) > LINE_CHARS:
        return [written, "= " + v]
    return [f"{written} = {v}"]


def _capped(intro: str, rows: list) -> list[Block]:
    out: list[Block] = [("p", intro), ("eq", rows[:MAX_ROWS])]
    if len(rows) > MAX_ROWS:
        out.append(("p", f"(and {len(rows) - MAX_ROWS} more entries of the same form.)"))
    return out


def _local(d: Derivation) -> list[Block]:
    subs = substitutions(d)
    out: list[Block] = []
    for k, v in d._inputs.items():
        J = d.jacobian_array(k)
        if J.size > 400:
            continue
        Jn = evaluate(J, subs)
        if max(len(num_tex(e)) for e in Jn.reshape(-1)) > MAX_ENTRY_CHARS:
            continue
        shown = np.vectorize(lambda e: sp.Symbol(num_tex(e)), otypes=[object])(Jn)
        # a loss's derivative is ∂L/∂·, a layer's Jacobian ∂y/∂·
        top = "L" if not has_upstream(d) else "y"
        lhs = r"\frac{\partial %s}{\partial %s}" % (top, tex_name(k))
        out.append(("eq", [(lhs, [jacobian_tex(shown, v.shape, d._output.shape)])]))
    if not out:
        return []
    said = not has_upstream(d) and all(_said_locally(d, k) for k in d._inputs)
    intro = "The gradient at these numbers:" if said else "The local derivatives at these numbers:"
    return [("p", intro)] + out


def _chain(d: Derivation) -> list[Block]:
    """Each chain-rule sum written out with its numbers: Σ_o J[i, o] δ[o].  A loss has no
    upstream gradient and so no sum: its local derivatives above are already the gradient."""
    if not has_upstream(d):
        return []
    subs = substitutions(d)
    up = np.asarray(d._upstream, dtype=object)
    out: list[Block] = [("p", "Each sum with its numbers:")]
    for k in d._inputs:
        J = d.jacobian_array(k)
        x = d._inputs[k]
        rows = []
        for i in itertools.product(*(range(n) for n in x.shape)):
            terms = []
            for o in itertools.product(*(range(n) for n in up.shape)):
                if J[i + o] == 0:
                    continue
                # a loss has no δ (its upstream is the constant 1): the term is J alone
                dv = up[o].xreplace(subs) if isinstance(up[o], sp.Symbol) else None
                terms.append((J[i + o].xreplace(subs), dv))
            value = sp.Add(*[a if b is None else a * b for a, b in terms])
            lhs = r"\frac{\partial L}{\partial " + indexed(tex_name(k), i) + "}"
            if not terms:
                rows.append((lhs, ["0"]))
                continue
            written = [
                _factor(a) if b is None else f"{_factor(a)} \\cdot {_factor(b)}" for a, b in terms
            ]
            frags = [
                " + ".join(written[s : s + MAX_SUM_TERMS])
                for s in range(0, len(written), MAX_SUM_TERMS)
            ]
            frags = [frags[0]] + ["+ " + f for f in frags[1:]]
            if len(terms) == 1 and written[0] == num_tex(value):
                rows.append((lhs, [num_tex(value)]))
            elif sum(map(len, frags)) > 3 * LINE_CHARS:
                rows.append((lhs, [num_tex(value)]))
            else:
                frags[-1] += " = " + num_tex(value)
                rows.append((lhs, frags))
        out.append(("eq", rows[:MAX_ROWS]))
        if len(rows) > MAX_ROWS:
            out.append(("p", f"(and {len(rows) - MAX_ROWS} more entries.)"))
    return out


def _numeric_view(d: Derivation) -> Derivation:
    """A copy of ``d`` whose input and δ arrays hold the numbers (where given), for printing
    an op's own compact-rule arrays (the padded δ, the rotated filter) with numbers."""
    view = copy.copy(d)
    view._inputs = {
        k: (np.asarray(d.values[k], dtype=object) if k in d.values else v)
        for k, v in d._inputs.items()
    }
    if UPSTREAM in d.values:
        view._upstream = np.asarray(d.values[UPSTREAM], dtype=object)
    view.extra = {
        k: (evaluate(v, substitutions(d)) if isinstance(v, np.ndarray) else v)
        for k, v in d.extra.items()
    }
    view._cache = {}
    return view


def _compact(d: Derivation, local: bool = True) -> list[Block]:
    """The closed form at the numbers; ``local``: the document printed the local derivatives
    (a network's own document does not, so nothing there was said before)."""
    from ..registry import get

    subs = substitutions(d)
    out: list[Block] = [("p", "The compact rule evaluated at these numbers:")]
    op = get(d.op)
    try:  # the op's own arrays of the rule (pad(δ), rot180(w)), printed with numbers
        own = [b for b in op.sections(_numeric_view(d)) if b[0] == "eq"]
    except Exception:  # an op whose sections need symbols: its arrays are not printed
        own = []
    symbolic = [b for b in op.sections(d) if b[0] == "eq"]
    own = [b for b in own if b not in symbolic]  # formulas the numbers do not change: once
    out.extend(own)
    for k in d.grad_names:
        g = evaluate(d.grad_array(k), subs)
        if local and not has_upstream(d) and _said_locally(d, k):
            continue  # a loss's gradient is its local derivatives, printed with numbers above
        lhs = r"\frac{\partial L}{\partial " + tex_name(k) + "}"
        if max(len(num_tex(e)) for e in g.reshape(-1)) <= MAX_ENTRY_CHARS and g.size <= 64:
            out.append(("eq", [(lhs, [array_tex(g)])]))
        else:
            rows = [
                (r"\frac{\partial L}{\partial " + indexed(tex_name(k), i) + "}", [num_tex(e)])
                for i, e in entries(g, lambda i: i)
            ]
            out.append(("eq", rows[:MAX_ROWS]))
    return out if len(out) > 1 else []


def _said_locally(d: Derivation, k: str) -> bool:
    """Whether the closed-form gradient of ``k`` is entry for entry the local derivative the
    document printed already (a loss: no upstream gradient, nothing contracted)."""
    J = d.jacobian_array(k)
    g = d.grad_array(k)
    return J.size == g.size and all(
        sp.simplify(a - b) == 0 for a, b in zip(J.reshape(-1), g.reshape(-1))
    )


def _kernel(d: Derivation) -> list[Block]:
    report = kernel_comparison(d)
    if report is None:
        left = [n for n in value_names(d) if n not in d.values]
        return [
            (
                "p",
                "The kernels need a number for every input: "
                + ", ".join(f"${_symbol_tex(n)}$" for n in left)
                + " stayed symbolic, so they were not run on this instance.",
            )
        ]

    def label(k: str) -> str:
        if k == "output":
            return "$y$" if has_upstream(d) else "$L$"
        return f"$\\partial L/\\partial {tex_name(k)}$"

    failed = failed_checks(report)
    if failed:
        compared = {k: v for k, v in report.items() if k not in failed}
        said = "; ".join(f"{label(k)}: {why}" for k, why in failed.items())
        rest = (
            f" The others ({', '.join(label(k) for k in compared)}) differ by at most "
            f"{max(float(v) for v in compared.values()):.3g}."
            if compared
            else ""
        )
        return [
            ("h", (2, "Checked by the kernels")),
            (
                "p",
                "derivgrad's compiled kernels (run in float64 on these numbers) "
                f"could not confirm every array: {said}.{rest}",
            ),
        ]
    worst = max(float(v) for v in report.values())
    names = ", ".join(label(k) for k in report)
    verdict = "exactly" if worst == 0 else f"to within {worst:.1e} (float64 rounding)"
    return [
        ("h", (2, "Checked by the kernels")),
        (
            "p",
            f"derivgrad's compiled kernels (run in float64 on these numbers) give "
            f"the same arrays: {names} agree with the values above {verdict}; largest absolute "
            f"difference {worst:.3g}.",
        ),
    ]


def _whole(d: Derivation) -> list[Block]:
    """For an op that writes its whole document (a network): the numbers, the forward output,
    the gradients and the kernel check, appended."""
    return (
        [("h", (2, "A numeric instance"))]
        + _given(d)
        + _forward(d)
        + _compact(d, local=False)
        + _kernel(d)
    )


_POINTS: dict[str, Callable[[Derivation], list[Block]]] = {
    "problem": _given,
    "forward": _forward,
    "local": _local,
    "chain": _chain,
    "closed": _compact,
    "end": _kernel,
    "whole": _whole,
}


def at(point: str, d: Derivation) -> list[Block]:
    """The blocks of numbers that go at ``point`` of ``d``'s worked solution (none without
    values).  Points: ``problem``, ``forward``, ``local``, ``chain``, ``closed``, ``end``, and
    ``whole`` for an op that writes its whole document."""
    if not getattr(d, "values", None):
        return []
    return _POINTS[point](d)


__all__ = ["at", "array_tex", "complete", "num_tex", "substituted_tex"]
