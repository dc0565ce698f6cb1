"""``derivgrad derive``: derive an op's gradient and write the worked solution."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import formats
from ..errors import UsageError
from ._define_arguments import add_define_arguments, defined_op, refuse_without_define
from ._op_arguments import OPS, add_op_arguments, op_arguments


def _cmd_derive(a):
    from .. import derive
    from ..atomic import check_output, is_stream, write_output
    from ..documents.render import render
    from ..registry import get

    refuse_without_define(a)
    inputs = [a.define[1:]] if a.define is not None and a.define.startswith("@") else []
    fmt, pdf = _format(a)
    engine = None
    if pdf:
        if a.fragment:
            raise UsageError("--pdf needs a standalone document (no --fragment)")
        engine, fmt = formats.pdf_engine(a.engine, fmt)
    elif a.engine:
        raise UsageError("--engine chooses how --pdf compiles: give --pdf too")
    if a.output is not None:
        # before any work: a derivation can take minutes, and its output must have a place
        check_output(a.output, "-o", inputs=inputs, stream_ok=True)
        if pdf and not is_stream(a.output) and Path(a.output).suffix.lower() != ".pdf":
            raise UsageError(f"--pdf -o {a.output}: the PDF's file name must end in .pdf")
    failed: list[str] = []  # a network whose kernels differ from its derivation
    if a.model is not None:
        text, op_name, failed = _model_document(a, fmt)
    elif a.define is not None:
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
        from ..documents.worked import document

        if a.value or a.random_values is not None:
            raise UsageError("--value and --random-values need one op, not worked-problems")
        if not formats.get(fmt).collects:
            raise UsageError(f"--format {fmt} describes one derivation: name an op")
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
        # only the PDF is written: the source is compiled in a temporary directory, so no
        # .tex (or .aux, .log) lands beside it over a file the user did not name
        writer = formats.get(fmt)
        out = a.output or f"{op_name}.pdf"
        if a.output is None:
            check_output(out, "--pdf", inputs=inputs)
        try:
            writer.pdf(text, out, engine)
        except RuntimeError as e:
            raise UsageError(
                f"{e} (write the source with -o FILE{writer.extensions[0]}, without --pdf, "
                "to read it)"
            ) from None
        except FileNotFoundError as e:
            # the extra compiles without TeX
            raise UsageError(f"{e}; or: pip install 'derivgrad[pdf]' (Typst)") from None
        print(f"wrote {out}", file=sys.stderr)
    elif a.output is not None and a.output != "-":
        write_output(a.output, text.encode(), "-o")  # a full disk leaves the old file whole
        print(f"wrote {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if failed:
        # the document says where; the exit status and one line tell a script
        print(
            "derivgrad derive: the derived numbers differ from the network's kernels: "
            + "; ".join(failed),
            file=sys.stderr,
        )
        return 1
    return 0


def _model_document(a, fmt: str) -> tuple[str, str, list[str]]:
    """``--model net.py[:func] --input CxHxW``: the network written out layer by layer."""
    from ..netdoc import derive_network, render_network
    from ..nn.source import load, split
    from .check import input_shape

    if a.op or a.define is not None:
        raise UsageError("give --model alone, without an op or --define")
    if a.value or a.random_values is not None:
        raise UsageError(
            "--model draws its own numbers (--seed); --value and --random-values are for one op"
        )
    from ._op_arguments import _declared

    for name, (kind, _help) in _declared().items():
        option = f"no_{name}" if kind == "bool" else name
        if name not in ("input", "label") and getattr(a, option, None) not in (None, False):
            raise UsageError(
                f"--model takes --input, --label and --seed, not --{option.replace('_', '-')}"
            )
    if a.fragment and fmt == "json":
        raise UsageError("--fragment is for the text formats, not json")
    nd = derive_network(
        load(a.model),
        input_shape(getattr(a, "input", None) or "1x6x6"),
        label=1 if getattr(a, "label", None) is None else a.label,
        seed=a.seed,
        spec=a.model,
        verify=not a.no_verify,
        # a terminal sees which layer is being derived and proved; a log file stays clean
        progress=_layer_progress if sys.stderr.isatty() else None,
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    name = Path(split(a.model)[0]).stem
    return render_network(nd, fmt, standalone=not a.fragment), name, nd.failures


def _format(a) -> tuple[str | None, bool]:
    """``(format, compile a PDF)``: --format if given, else the -o file's suffix (the formats'
    registry; .pdf compiles, its engine choosing the format), else text on a terminal and
    LaTeX into a pipe (what scripts have always read)."""
    from ..atomic import is_stream

    named = a.output if a.output is not None and not is_stream(a.output) else None
    pdf = a.pdf or (named is not None and Path(named).suffix.lower() == ".pdf")
    if a.format or pdf:
        return a.format, pdf
    fmt = formats.from_path(named) if named else None
    if fmt is not None:
        return fmt, False
    if a.output is None and sys.stdout.isatty():
        return "text", False
    return "latex", False


def _layer_progress(k: int, n: int, layer: str) -> None:
    print(f"\rderiving layer {k} of {n}: {layer[:50]}  ", end="", file=sys.stderr, flush=True)


def _progress(k: int, n: int, number: str) -> None:
    """One line on a terminal's stderr, rewritten in place: which problem is being derived."""
    print(f"\rderiving worked problem {number} ({k} of {n})  ", end="", file=sys.stderr, flush=True)


def _attach_values(d, pairs: list[str], seed: int | None):
    """``--random-values SEED`` fills every input and δ; each ``--value NAME=ARRAY`` then sets
    (or overrides) one of them."""
    from ..documents.instance import attach, parse_array, random_values

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
        default=None,
        help="default: from the -o extension (.tex .typ .md .html .txt .json; .pdf compiles); "
        "text on a terminal; latex into a pipe",
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
    p.add_argument(
        "-o",
        "--output",
        help="write to this file (replaced atomically; a device such as /dev/null or a FIFO "
        "is written into; - is standard output) instead of standard output; its suffix "
        "names the format when --format is not given",
    )
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
    p.add_argument(
        "--model",
        metavar="FILE[:FUNC]",
        help="a network of one's own (a Python file defining model(), or FUNC): write its "
        "forward and backward pass layer by layer on one sample of --input (default 1x6x6; "
        "CxHxW), with --label (default 1) and numbers drawn from --seed",
    )
    p.add_argument("--seed", type=int, default=0, help="with --model: the sample's numbers")
    p.set_defaults(func=_cmd_derive)
