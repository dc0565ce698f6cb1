"""What the generated kernels call at run time: the thread pool that runs their parallel
phases (their ``exp``, ``log``, ``tanh`` and ``erf`` are in :mod:`derivgrad.notation.vmath`).

A generated kernel is a sequence of phases (see :func:`derivgrad.notation.codegen.phases`),
each a serial ``@njit(nogil=True)`` function; a parallel phase takes ``(tid, nt)`` and runs
chunk ``tid`` of ``nt`` of its outer loop.  Python threads run the chunks (the functions
release the GIL), the caller's thread taking chunk 0; the phase returns when every chunk has.
Measured (``benchmarks/bench_define.py``): Numba's ``parallel=True`` cost about 1.5 s of
compile per ``prange`` loop (the outlined gufunc is optimised by LLVM on its own), three to
five times the serial loop's compile, for the same run time on chunks this coarse.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
from numba.core.compiler import Compiler


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


_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_workers = 0


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool, _workers
    with _lock:
        if _pool is None or _workers < n:
            if _pool is not None:
                _pool.shutdown(wait=False)  # its idle threads end; running chunks finish
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="derivgrad-define")
            _workers = n
        return _pool


def run_parallel(fn: Callable[..., Any], *args: Any) -> None:
    """``fn(tid, nt, *args)`` for ``tid = 0 .. nt-1`` at once, ``nt`` the caller's Numba thread
    count (:func:`derivgrad.kernels.set_threads`); each chunk owns its slice of the written
    array, so no two write one element."""
    nt = int(numba.get_num_threads())
    if nt <= 1:
        fn(0, 1, *args)
        return
    pool = _executor(nt - 1)
    futures = [pool.submit(fn, t, nt, *args) for t in range(1, nt)]
    try:
        fn(0, nt, *args)
    finally:
        for f in futures:
            f.result()
