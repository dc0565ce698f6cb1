"""``derivgrad derive``: derive an op's gradient and write the worked solution."""

from __future__ import annotations

import argparse
import sys

from .. import formats
from ..errors import UsageError
from ._define_arguments import add_define_arguments, defined_op
from ._op_arguments import OPS, add_op_arguments, op_arguments


def _cmd_derive(a):
    from pathlib import Path

    from .. import derive, formats
    from ..atomic import write_text_atomic
    from ..registry import get
    from ..render import render

    fmt = a.format or (formats.from_path(a.output) if a.output and not a.pdf else None)
    engine = None
    if a.pdf:
        if a.fragment:
            raise UsageError("--pdf needs a standalone document (no --fragment)")
        engine, fmt = formats.pdf_engine(a.engine, fmt)
    elif a.engine:
        raise UsageError("--engine chooses how --pdf compiles: give --pdf too")
    fmt = fmt or "latex"
    if a.define is not None:
        if a.op:
            raise UsageError(f"give either an op ({a.op}) or --define, not both")
        d = defined_op(a).derive()
        if a.value or a.random_values is not None:
            d = _attach_values(d, a.value or [], a.random_values)
        if not a.no_verify:
            d.verify()
        text = render(d, fmt, standalone=not a.fragment)
        op_name = d.op
    elif not a.op:
        raise UsageError("give an op name (derivgrad derive conv2d) or --define SPEC --shape ...")
    elif a.op.replace("_", "-") == "worked-problems":
        from ..worked import document

        if a.value or a.random_values is not None:
            raise UsageError("--value and --random-values need one op, not worked-problems")
        text = document(fmt)
        op_name = "worked-problems"
    else:
        d = derive(a.op, **op_arguments(a, get(a.op)))
        if a.value or a.random_values is not None:
            d = _attach_values(d, a.value or [], a.random_values)
        if not a.no_verify:
            d.verify()
        text = render(d, fmt, standalone=not a.fragment)
        op_name = d.op
    if a.pdf:
        writer = formats.get(fmt)
        out = Path(a.output or f"{op_name}.pdf").with_suffix(".pdf")
        source = out.with_suffix(writer.extensions[0])
        write_text_atomic(source, text)
        try:
            writer.pdf(text, out, engine)
        except RuntimeError as e:
            raise UsageError(f"{e} (the source is at {source})") from None
        except FileNotFoundError as e:
            # the extra compiles without TeX
            raise UsageError(f"{e}; or: pip install 'derivgrad[pdf]' (Typst)") from None
        print(f"wrote {out} and {source}", file=sys.stderr)
        return
    if a.output:
        write_text_atomic(a.output, text)  # a full disk leaves the old file, not half a new one
        print(f"wrote {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _attach_values(d, pairs: list[str], seed: int | None):
    """``--random-values SEED`` fills every input and δ; each ``--value NAME=ARRAY`` then sets
    (or overrides) one of them."""
    from ..instance import attach, parse_array, random_values

    values = random_values(d, seed) if seed is not None else {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--value takes NAME=ARRAY (e.g. x='[[1,2],[3,4]]'), got {pair!r}")
        values[name.strip()] = parse_array(text, name.strip())
    return attach(d, values)


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
    p.add_argument(
        "--format",
        choices=formats.names(),
        help="default: the one the -o file's suffix names (.md, .html, ...), else latex",
    )
    p.add_argument(
        "--value",
        action="append",
        metavar="NAME=ARRAY",
        help="numbers for one input (or upstream, for δ), e.g. x='[[1,2,0],[0,-1,3],[2,1,1]]'; "
        "repeatable; the worked solution carries them through every step",
    )
    p.add_argument(
        "--random-values",
        type=int,
        metavar="SEED",
        help="fill every input and δ with small integers drawn from SEED",
    )
    p.add_argument(
        "--fragment", action="store_true", help="LaTeX without preamble, to paste into a document"
    )
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.add_argument(
        "--pdf",
        action="store_true",
        help="compile to PDF: pdflatex if installed, else the engine of derivgrad[pdf]",
    )
    p.add_argument(
        "--engine",
        choices=list(formats.engines()) if full else None,
        help="the PDF engine (it decides the format compiled)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the symbolic proof")
    p.set_defaults(func=_cmd_derive)
