"""What the generated kernels call at run time: the thread pool that runs their parallel
phases (their ``exp``, ``log``, ``tanh`` and ``erf`` are in :mod:`derivgrad.notation.vmath`).

A generated kernel is a sequence of phases (see :func:`derivgrad.notation.codegen.phases`),
each a serial ``@njit(nogil=True)`` function; a parallel phase takes ``(tid, nt)`` and runs
chunk ``tid`` of ``nt`` of its outer loop.  Python threads run the chunks (the functions
release the GIL), the caller's thread among them, each chunk claimed by the first thread free
to run it (:func:`run_parallel`); the phase returns when every chunk has.
Measured (``benchmarks/bench_define.py``): Numba's ``parallel=True`` cost about 1.5 s of
compile per ``prange`` loop (the outlined gufunc is optimised by LLVM on its own), three to
five times the serial loop's compile, for the same run time on chunks this coarse.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

import numba
import numpy as np
from numba.core.compiler import Compiler

from derivgrad.kernels import _threads


class PhaseCompiler(Compiler):
    """Numba's pipeline with the two flags its ``prange`` bodies get (``parfor_lowering``):
    ``noalias`` (the array arguments do not overlap) and the NumPy error model (no
    zero-division checks: every integer divisor here is a positive extent, and a float
    division by zero gives inf as NumPy's does).  Sound for a phase: every array it writes
    was allocated by :class:`~derivgrad.notation.op.DefinedOp` for the call; the only arrays
    that may overlap are the inputs and the upstream gradient, which are only read.
    Measured on the depthwise conv's backward (one thread): 10.7 ms without, 8.7 ms with,
    as fast as the ``prange`` version; the loops vectorise without run-time overlap checks."""

    def __init__(
        self,
        typingctx: Any,
        targetctx: Any,
        library: Any,
        args: Any,
        return_type: Any,
        flags: Any,
        locals: Any,
    ) -> None:
        # set before Numba's constructor, which builds the target context's error model from
        # the flags (set later, in define_pipelines, the Python model stayed: 1.0 / 0.0
        # raised ZeroDivisionError instead of giving inf)
        flags.noalias = True
        flags.error_model = "numpy"
        super().__init__(typingctx, targetctx, library, args, return_type, flags, locals)


class _Call:
    """One parallel phase call: ``n`` chunks, each run once by whichever thread claims it
    first (``next`` on an ``itertools.count`` is atomic under the GIL)."""

    __slots__ = ("fn", "args", "n", "claim", "lock", "done", "finished", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple, n: int) -> None:
        self.fn = fn
        self.args = args
        self.n = n
        self.claim = itertools.count()
        self.lock = threading.Lock()
        self.done = 0
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
        """Run chunks until none is left unclaimed; each claimed chunk counts as done once
        it has returned (or raised: the error is kept for the caller)."""
        while True:
            i = next(self.claim)
            if i >= self.n:
                return
            try:
                self.fn(i, self.n, *self.args)
            except BaseException as e:  # handed to the caller's thread
                if self.error is None:
                    self.error = e
            finally:
                self._count(1)

    def cancel(self) -> None:
        """Claim every chunk not yet claimed, running none (the caller was interrupted)."""
        k = 0
        while next(self.claim) < self.n:
            k += 1
        if k:
            self._count(k)

    def _count(self, k: int) -> None:
        with self.lock:
            self.done += k
            if self.done == self.n:
                self.finished.set()


def _worker(queue: SimpleQueue) -> None:
    while True:
        queue.get().work()


_lock = threading.Lock()
_queue: SimpleQueue = SimpleQueue()
_workers: list[threading.Thread] = []


def _ensure_workers(n: int) -> None:
    with _lock:
        while len(_workers) < n:
            t = threading.Thread(
                target=_worker,
                args=(_queue,),
                name=f"derivgrad-define-{len(_workers) + 1}",
                daemon=True,
            )
            t.start()
            _workers.append(t)


def _after_fork() -> None:
    # a forked child has only the thread that forked: its workers are gone (the caller would
    # still run every chunk itself, but the queue would fill with calls no one takes)
    global _queue, _lock
    _queue = SimpleQueue()
    _lock = threading.Lock()
    _workers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

# When a dict, run_parallel adds each phase's wall time to it (seconds, by the phase
# function's name): benchmarks/ and the profiling of a defined layer read it; None costs
# one test a phase.
profile: dict[str, list[float]] | None = None


def _small(args: tuple) -> bool:
    """Whether every array a phase is given holds less than the built-in kernels' bound on
    work worth sharing (:func:`derivgrad.kernels._threads.serial_if`: about 50 µs of one
    core's memory traffic, the order of waking a worker); their sum bounds what the phase
    reads and writes, so no phase with more work is kept on one thread."""
    total = 0
    for a in args:
        if isinstance(a, np.ndarray):
            total += a.nbytes
    return total < _threads.serial_below["bytes"]


def run_parallel(fn: Callable[..., Any], *args: Any) -> None:
    """``fn(c, nt, *args)`` for every chunk ``c = 0 .. nt-1``, ``nt`` the caller's Numba thread
    count (:func:`derivgrad.kernels.set_threads`); each chunk owns its slice of the written
    array, so no two write one element.

    The chunks are claimed, not assigned: the caller's thread and ``nt - 1`` workers each
    take the next unclaimed chunk until none is left, and the call returns when every chunk
    has run.  Why: on a machine shared with other work, a sleeping worker woken for a phase
    may wait for a core for a scheduler slice (measured here, load 2-3: the second chunk of
    a layer norm phase began 2.3-3.5 ms after the first, while each chunk took 0.1-0.4 ms);
    the caller then runs that chunk itself instead of waiting, so a phase never takes much
    longer than on one thread.  Which thread runs a chunk changes nothing in the results:
    the chunks' bounds depend on ``nt`` alone, and every entry is computed by one chunk in
    one order (the run-to-run determinism that training's exact resume needs)."""
    nt = int(numba.get_num_threads())
    t0 = time.perf_counter() if profile is not None else 0.0
    if nt <= 1:
        fn(0, 1, *args)
    elif _small(args):
        # the same chunks, on this thread: the same bits as on nt threads
        for c in range(nt):
            fn(c, nt, *args)
    else:
        call = _Call(fn, args, nt)
        _ensure_workers(nt - 1)
        for _ in range(nt - 1):
            _queue.put(call)
        try:
            call.work()
        finally:
            call.cancel()
            call.finished.wait()
        if call.error is not None:
            raise call.error
    if profile is not None:
        profile.setdefault(fn.__name__, []).append(time.perf_counter() - t0)
