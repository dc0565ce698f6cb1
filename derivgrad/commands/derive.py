"""``derivgrad derive``: derive an op's gradient and write the worked solution."""

import sys

from ..errors import UsageError

DERIVE_PARAMS = (
    "input",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "channels",
    "filters",
    "batch",
    "classes",
    "features",
    "outputs",
    "hidden",
    "label",
    "region",
)


def _cmd_derive(a):
    from pathlib import Path

    from .. import derive
    from ..render import compile_pdf, render

    fmt = a.format
    if a.op.replace("_", "-") == "worked-problems":
        from ..worked import document

        text = document(fmt)
        op_name = "worked-problems"
    else:
        params = {k: getattr(a, k) for k in DERIVE_PARAMS if getattr(a, k) is not None}
        if a.no_bias:
            params["bias"] = False
        d = derive(a.op, **params)
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


def register(sub):
    p = sub.add_parser(
        "derive",
        help="derive an op's gradient symbolically and write the worked solution",
        description="Derive, prove and print the gradient of OP on a small instance.",
    )
    p.add_argument(
        "op",
        help="conv1d, conv2d, maxpool2d, avgpool2d, linear, relu, softmax, softmax_cross_entropy, "
        "logistic_regression, batchnorm2d, residual, flatten, lenet, or worked-problems "
        "(all thirteen worked problems in one document with a table of contents)",
    )
    for name in ("input", "kernel", "stride", "padding", "dilation"):
        p.add_argument(f"--{name}", help="an int or AxB")
    for name in (
        "channels",
        "filters",
        "batch",
        "classes",
        "features",
        "outputs",
        "hidden",
        "label",
        "region",
    ):
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--no-bias", action="store_true")
    p.add_argument("--format", choices=["latex", "markdown", "text"], default="latex")
    p.add_argument(
        "--fragment", action="store_true", help="LaTeX without preamble, to paste into a document"
    )
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.add_argument("--pdf", action="store_true", help="compile the LaTeX with pdflatex")
    p.add_argument("--no-verify", action="store_true", help="skip the symbolic proof")
    p.set_defaults(func=_cmd_derive)
