"""``derivgrad derive``: derive an op's gradient and write the worked solution."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from ._define_arguments import add_define_arguments, defined_op
from ._op_arguments import OPS, add_op_arguments, op_arguments


def _cmd_derive(a):
    from .. import derive
    from ..atomic import write_text_atomic
    from ..registry import get
    from ..render import compile_pdf, render

    fmt, pdf = _format(a)
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
        if fmt == "json":
            raise UsageError("--format json describes one derivation: name an op")
        # a terminal sees which problem the 35-50 s render is on; a log file stays clean
        text = document(fmt, progress=_progress if sys.stderr.isatty() else None)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        op_name = "worked-problems"
    else:
        d = derive(a.op, **op_arguments(a, get(a.op)))
        if a.value or a.random_values is not None:
            d = _attach_values(d, a.value or [], a.random_values)
        if not a.no_verify:
            d.verify()
        text = render(d, fmt, standalone=not a.fragment)
        op_name = d.op
    if pdf:
        if fmt != "latex" or a.fragment:
            raise UsageError("--pdf needs --format latex and a standalone document (no --fragment)")
        out = Path(a.output or f"{op_name}.pdf").with_suffix(".pdf")
        write_text_atomic(Path(out).with_suffix(".tex"), text)
        try:
            compile_pdf(text, out)
        except RuntimeError as e:
            raise UsageError(f"{e} (the .tex is at {Path(out).with_suffix('.tex')})") from None
        print(f"wrote {out} and {Path(out).with_suffix('.tex')}", file=sys.stderr)
        return
    if a.output:
        write_text_atomic(a.output, text)  # a full disk leaves the old file, not half a new one
        print(f"wrote {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


# what an -o file's extension asks for when --format does not say
EXTENSIONS = {
    ".tex": "latex",
    ".md": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".json": "json",
    ".pdf": "latex",
}


def _format(a) -> tuple[str, bool]:
    """``(format, compile a PDF)``: --format if given, else the -o extension, else text on a
    terminal and LaTeX into a pipe or file (what scripts have always read)."""
    ext = Path(a.output).suffix.lower() if a.output else ""
    pdf = a.pdf or ext == ".pdf"
    if a.format:
        return a.format, pdf
    if pdf:
        return "latex", True
    if ext in EXTENSIONS:
        return EXTENSIONS[ext], False
    if not a.output and sys.stdout.isatty():
        return "text", False
    return "latex", False


def _progress(k: int, n: int, number: str) -> None:
    """One line on a terminal's stderr, rewritten in place: which problem is being derived."""
    print(f"\rderiving worked problem {number} ({k} of {n})  ", end="", file=sys.stderr, flush=True)


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
        choices=["latex", "markdown", "text", "html", "json"],
        default=None,
        help="default: from the -o extension (.tex .md .html .txt .json .pdf); text on a "
        "terminal; latex into a pipe",
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
    p.add_argument("--pdf", action="store_true", help="compile the LaTeX with pdflatex")
    p.add_argument("--no-verify", action="store_true", help="skip the symbolic proof")
    p.set_defaults(func=_cmd_derive)
