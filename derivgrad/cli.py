"""The ``derivgrad`` command line: ``derive``, ``shapes``, ``check``, ``train``, ``predict``,
``bench``.  Errors in user input print one line and exit with status 2, no traceback
(set ``DERIVGRAD_DEBUG=1`` to see it)."""

import argparse
import os
import sys

from .errors import UsageError


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the options generated from the ops' parameters (which load the registry
    and SymPy) are added only for the subcommand being run, so ``train`` starts fast."""
    from .commands import SUBCOMMANDS

    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if not w.startswith("-")), None)

    ap = argparse.ArgumentParser(
        prog="derivgrad",
        description="Derive, prove, print and run the gradients of convolutional networks.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub, full=module.__name__.rsplit(".", 1)[-1] == command)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser(argv)
    a = ap.parse_args(argv)
    try:
        rc = a.func(a)
    except (UsageError, ValueError, TypeError, OSError) as e:
        if os.environ.get("DERIVGRAD_DEBUG"):
            raise
        print(f"derivgrad {a.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"derivgrad {a.command}: interrupted", file=sys.stderr)
        return 130
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
