"""``--define SPEC`` (or ``--define @FILE``), ``--shape NAME=AxB`` and ``--range INDEX=N``:
a layer in index notation on the command line (``derivgrad derive``, ``derivgrad check``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UsageError


def add_define_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("a layer of your own, in index notation (instead of OP)")
    g.add_argument(
        "--define",
        metavar="SPEC",
        help="the definition, e.g. 'y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]'; "
        "statements on separate lines or separated by ';'; @FILE reads it from FILE",
    )
    g.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=AxB",
        help="an input's example shape, e.g. x=2x3x7x7 (one --shape per input)",
    )
    g.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="INDEX=N",
        help="fix an index's range where no read determines it: u=2 (0 to 1) or u=1:3",
    )
    g.add_argument(
        "--name",
        metavar="NAME",
        help="the layer's name (an identifier) in tables and documents (default: defined_<hash>)",
    )
    g.add_argument(
        "--title", metavar="TEXT", help="the documents' title (default: User-defined layer)"
    )


def _sizes(option: str, text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        sizes = tuple(int(v) for v in value.lower().split("x"))
    except ValueError:
        raise UsageError(f"--{option} takes NAME=AxB (e.g. x=2x3x7x7), got {text!r}") from None
    return name.strip(), sizes


def refuse_without_define(a: argparse.Namespace) -> None:
    """``--name``/``--title``/``--shape``/``--range`` say something only with ``--define``."""
    if a.define is None:
        given = [f"--{k}" for k in ("name", "title") if getattr(a, k, None) is not None]
        given += [f"--{k}" for k in ("shape", "range") if getattr(a, k, None)]
        if given:
            raise UsageError(
                f"{', '.join(given)} {'describes' if len(given) == 1 else 'describe'} a layer "
                "of --define; give --define SPEC"
            )


def defined_op(a: argparse.Namespace) -> Any:
    """The op of ``--define``/``--shape``/``--range`` (registered under its name)."""
    from ..notation import define

    spec = a.define
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            spec = path.read_text()
        except OSError as e:
            raise UsageError(f"--define @{path}: cannot read it ({e.strerror})") from None
    spec = spec.replace(";", "\n")
    shapes = dict(_sizes("shape", s) for s in a.shape)
    if not shapes:
        raise UsageError("--define needs the example shape of every input: --shape x=2x3x7x7 ...")
    ranges: dict[str, Any] = {}
    for r in a.range:
        name, sep, value = r.partition("=")
        try:
            bounds = tuple(int(v) for v in value.split(":"))
            if not sep or not name.strip() or len(bounds) not in (1, 2):
                raise ValueError
        except ValueError:
            raise UsageError(f"--range takes INDEX=N or INDEX=LO:HI, got {r!r}") from None
        ranges[name.strip()] = bounds[0] if len(bounds) == 1 else bounds
    name, title = getattr(a, "name", None), getattr(a, "title", None)
    return define(spec, name=name, title=title, ranges=ranges, **shapes)
