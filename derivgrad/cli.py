"""The ``derivgrad`` command line: ``derive``, ``shapes``, ``check``, ``train``, ``predict``,
``bench``.  Errors in user input print one line and exit with status 2, no traceback
(set ``DERIVGRAD_DEBUG=1`` to see it)."""

import argparse
import os
import sys

from .errors import UsageError


def _cmd_bench(a):
    from .bench import run
    run(a.repeats, a.threads, a.json)


def build_parser():
    ap = argparse.ArgumentParser(prog="derivgrad", description="Derive, prove, print and run the "
                                 "gradients of convolutional networks.")
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="kernel timings side by side with PyTorch (or NumPy)")
    b.add_argument("--repeats", type=int, default=20)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    b.set_defaults(func=_cmd_bench)
    for register in _REGISTRARS:
        register(sub)
    return ap


_REGISTRARS = []


def subcommand(register):
    """Decorator for modules that add a subcommand (keeps this file free of their imports)."""
    _REGISTRARS.append(register)
    return register


def main(argv=None):
    from . import commands  # noqa: F401  (registers the other subcommands)
    ap = build_parser()
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
