"""Ctrl-C and SIGTERM deferred to a safe point, so an interrupted run can resume exactly.

Inside :func:`deferred_interrupts`, the first SIGINT or SIGTERM only raises a flag; the
training loop looks at it between steps (:meth:`Interrupts.requested`), writes its
checkpoint at a consistent position and stops.  A second signal is the user insisting: it
raises :class:`KeyboardInterrupt` at once, and the caller must then *not* save (the state
may be half-updated; the last checkpoint stands).

Signal handlers can only be installed from the main thread; elsewhere (a training run in a
worker thread of a notebook) the context does nothing and signals keep their usual
behaviour.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """What was received: ``requested()`` once a first signal came; ``name`` of that signal."""

    def __init__(self) -> None:
        self.name: str | None = None

    def requested(self) -> bool:
        return self.name is not None

    def _handle(self, signum: int, frame: object) -> None:
        if self.name is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Interrupts]:
    """Install the deferring handlers for SIGINT and SIGTERM; restore the old ones after."""
    state = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, state._handle)
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def forget_handled_interrupt() -> None:
    """Tell CPython that the KeyboardInterrupt being handled was handled.

    A Ctrl-C that reached us through Python code an extension module ran while loading
    (``PyRun_*``) is remembered by CPython as unhandled, and at exit it then ends the
    process by SIGINT instead of with the status the command returns (1 in 3 Ctrl-Cs
    during imports ended with -2, not 130).  Every ``PyRun_*`` call clears that mark
    before it runs, so one empty run clears it."""
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleStringFlags(b"pass", None)
    except (ImportError, AttributeError, OSError):  # not CPython: nothing remembered
        pass
