"""``derivgrad derive``: derive an op's gradient and write the worked solution."""

from __future__ import annotations

import argparse
import sys

from ..errors import UsageError
from ._define_arguments import add_define_arguments, defined_op
from ._op_arguments import OPS, add_op_arguments, op_arguments


def _cmd_derive(a):
    from pathlib import Path

    from .. import derive
    from ..registry import get
    from ..render import compile_pdf, render

    fmt = a.format
    if a.define is not None:
        if a.op:
            raise UsageError(f"give either an op ({a.op}) or --define, not both")
        d = defined_op(a).derive()
        if not a.no_verify:
            d.verify()
        text = render(d, fmt, standalone=not a.fragment)
        op_name = d.op
    elif not a.op:
        raise UsageError("give an op name (derivgrad derive conv2d) or --define SPEC --shape ...")
    elif a.op.replace("_", "-") == "worked-problems":
        from ..worked import document

        text = document(fmt)
        op_name = "worked-problems"
    else:
        d = derive(a.op, **op_arguments(a, get(a.op)))
        if not a.no_verify:
            d.verify()
        text = render(d, fmt, standalone=not a.fragment)
        op_name = d.op
    if a.pdf:
        if fmt != "latex" or a.fragment:
            raise UsageError("--pdf needs --format latex and a standalone document (no --fragment)")
        out = Path(a.output or f"{op_name}.pdf").with_suffix(".pdf")
        Path(out).with_suffix(".tex").write_text(text)
        try:
            compile_pdf(text, out)
        except RuntimeError as e:
            raise UsageError(f"{e} (the .tex is at {Path(out).with_suffix('.tex')})") from None
        print(f"wrote {out} and {Path(out).with_suffix('.tex')}", file=sys.stderr)
        return
    if a.output:
        Path(a.output).write_text(text)
        print(f"wrote {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    p = sub.add_parser(
        "derive",
        help="derive an op's gradient symbolically and write the worked solution",
        description="Derive, prove and print the gradient of OP on a small instance.",
    )
    names = ", ".join(OPS()) if full else "an op name"
    p.add_argument(
        "op",
        nargs="?",
        help=f"{names}, or worked-problems "
        "(all the worked problems of the notes in one document with a table of contents)",
    )
    if full:
        add_op_arguments(p)
    add_define_arguments(p)
    p.add_argument("--format", choices=["latex", "markdown", "text"], default="latex")
    p.add_argument(
        "--fragment", action="store_true", help="LaTeX without preamble, to paste into a document"
    )
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.add_argument("--pdf", action="store_true", help="compile the LaTeX with pdflatex")
    p.add_argument("--no-verify", action="store_true", help="skip the symbolic proof")
    p.set_defaults(func=_cmd_derive)
