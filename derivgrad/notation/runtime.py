"""What the generated kernels call at run time: the thread pool that runs their parallel
phases, and an ``exp`` that vectorises (at the end of this module).

A generated kernel is a sequence of phases (see :func:`derivgrad.notation.codegen.phases`),
each a serial ``@njit(nogil=True)`` function; a parallel phase takes ``(tid, nt)`` and runs
chunk ``tid`` of ``nt`` of its outer loop.  Python threads run the chunks (the functions
release the GIL), the caller's thread taking chunk 0; the phase returns when every chunk has.
Measured (``benchmarks/bench_define.py``): Numba's ``parallel=True`` cost about 1.5 s of
compile per ``prange`` loop (the outlined gufunc is optimised by LLVM on its own), three to
five times the serial loop's compile, for the same run time on chunks this coarse.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.core.compiler import Compiler
from numba.extending import intrinsic, overload


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


# -- exp that vectorises ---------------------------------------------------------------------
# Numba calls libm's scalar exp (no SVML here; llvmlite's code generator scalarises the
# vectoriser's llvm.exp.v8f64 again), about 20 ns an entry: softmax's, SiLU's and softplus's
# passes ran 5-10x slower than PyTorch's vectorised exp.  This one is arithmetic, selects and
# a bit cast only, so LLVM vectorises the loops that call it.  exp(x) = 2^k · e^r with
# k = round(x / ln 2), r = x - k ln 2 in two parts (Cody and Waite: k · _LN2_HI is exact for
# |k| < 2^21, so r carries no rounding of the product), e^r by its Taylor polynomial of degree
# 13 (remainder < 0.3466^14 / 14! = 4.4e-18 on |r| <= ln 2 / 2), and 2^k built as two powers of
# two from their exponent bits (each a normal number for every k that can occur, so results
# down to the subnormals are scaled in two exact steps).  Measured against libm on 3e6 points
# over [-746, 711]: at most 1 ulp (tests/test_define_exp.py holds it on 160,000).  The phases that
# call it are compiled without fastmath's ``reassoc``, which would let LLVM join the two parts
# of ln 2 into one rounded constant (:func:`derivgrad.notation.codegen.phases`).
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 to 32 bits: k · _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10  # ln 2 - _LN2_HI


def f64_from_bits(bits: Any) -> float:
    """The double whose IEEE 754 bits are ``bits``: in Python through NumPy (the kernels run
    as Python in the fuzzer's source check), compiled as one bit cast (the overload below)."""
    return float(np.array(bits, dtype=np.int64).view(np.float64))


@intrinsic
def _bitcast_f64(typingctx: Any, bits: Any) -> Any:
    sig = types.float64(types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@overload(f64_from_bits, inline="always")
def _f64_from_bits_compiled(bits):  # unannotated: Numba compares its signature with the lambda
    return lambda bits: _bitcast_f64(bits)


def exp(x: float) -> float:
    """``e ** x`` (see above); plain Python here, compiled where a kernel calls it (the
    generated module wraps it in ``numba.njit(inline="always")``, so that a module run as
    Python, with Numba's JIT off, runs this as it is)."""
    v = float(x)
    # clamped (NaN to 0): k stays a small integer; the ends are set below
    c = min(max(v, -746.0), 710.0) if v == v else 0.0
    k = math.floor(c * _LOG2E + 0.5)
    r = (c - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    ki = np.int64(k)
    k1 = ki >> 1
    y = p * f64_from_bits((k1 + 1023) << 52) * f64_from_bits((ki - k1 + 1023) << 52)
    if v > 709.782712893384:  # past the largest double's log
        y = math.inf
    if v < -745.1332191019412:  # below half the smallest subnormal's log
        y = 0.0
    if v != v:
        y = v
    return y
