"""The ``derivgrad`` command line: ``derive``, ``shapes``, ``check``, ``train``, ``predict``,
``bench``.  Errors in user input print one line and exit with status 2, no traceback
(set ``DERIVGRAD_DEBUG=1`` to see it); an unexpected error prints one line naming it and
exits with 1; Ctrl-C at any moment prints ``interrupted`` and exits with 130; a closed or
broken standard output ends quietly with 141 (as ``SIGPIPE`` would)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from .errors import DerivgradError, UsageError
from .training.interrupt import forget_handled_interrupt

USER_ERRORS = (
    DerivgradError,
    ValueError,
    TypeError,
    OSError,
    subprocess.SubprocessError,  # a TeX engine that fails or hangs past its timeout
    RuntimeError,
    MemoryError,
)


def _command_word(argv: list[str] | None) -> str | None:
    """The subcommand named in ``argv`` (``sys.argv[1:]`` when None): its first non-option."""
    words = sys.argv[1:] if argv is None else argv
    return next((w for w in words if not w.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the options generated from the ops' parameters (which load the registry
    and SymPy) are added only for the subcommand being run, so ``train`` starts fast."""
    from .commands import SUBCOMMANDS

    command = _command_word(argv)

    ap = argparse.ArgumentParser(
        prog="derivgrad",
        description="Derive, prove, print and run the gradients of convolutional networks.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(sub, full=module.__name__.rsplit(".", 1)[-1] == command)
    return ap


def _check_environment() -> None:
    """Numba reads these when first imported and fails with a message that names nothing."""
    for name in ("NUMBA_NUM_THREADS",):
        v = os.environ.get(name)
        if v is not None and not (v.strip().isdigit() and int(v) >= 1):
            raise UsageError(f"environment variable {name}={v!r} must be an integer >= 1")


def _say(line: str) -> None:
    try:  # one write: under MPI several ranks share the terminal, lines must not interleave
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr closed too: nothing to tell
        pass


def _say_error(command: str | None, msg: str) -> None:
    """The one line a user error prints: ``derivgrad CMD: error: MSG``."""
    _say(f"derivgrad{' ' + command if command else ''}: error: {msg}")


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit-time flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _run(argv: list[str] | None) -> int:
    try:
        # before the parser: building it imports Numba, which raises on some of these values
        _check_environment()
    except UsageError as e:
        _say_error(_command_word(argv), str(e))
        return 2
    ap = build_parser(argv)
    a = ap.parse_args(argv)
    try:
        rc = a.func(a)
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except USER_ERRORS as e:
        if os.environ.get("DERIVGRAD_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, MemoryError):
            msg = "out of memory" + (f" ({msg})" if str(e) else "")
        elif isinstance(e, subprocess.TimeoutExpired):
            cmd = e.cmd[0] if isinstance(e.cmd, (list, tuple)) and e.cmd else e.cmd
            msg = f"{os.path.basename(str(cmd))} timed out after {e.timeout:g} s"
        _say_error(a.command, msg)
        return 2
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("DERIVGRAD_DEBUG"):
            raise
        _say(
            f"derivgrad {a.command}: internal error: {type(e).__name__}: {e} "
            f"(set DERIVGRAD_DEBUG=1 for the traceback)"
        )
        return 1
    return rc or 0


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except KeyboardInterrupt:
        _say("derivgrad: interrupted")
        forget_handled_interrupt()
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141


if __name__ == "__main__":
    sys.exit(main())
