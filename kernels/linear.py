r"""Fully connected layer ``y = x W^T + b``.

The work is three GEMMs.  How they are split over the threads is a *strategy*:

- ``"blas"``: one full-size GEMM per product through NumPy's multithreaded BLAS, called
  from outside Numba's parallel region, its pool set to the same thread count as Numba's
  (:mod:`._threads`).  The BLAS tiles the output over an M×N thread grid itself, so each
  thread reads about 1/T of each operand.
- ``"tiles"``: a ``tm × tn × tk`` grid of blocks in one ``prange``, each a single-threaded
  BLAS call on 1/tm of the rows of A and 1/tn of the columns of B over 1/tk of the inner
  dimension (partial sums reduced afterwards), chosen to minimise what a thread reads
  (:func:`grid`).  Used where no separate outer BLAS exists.
- ``"rows"``: the former design, batch rows split over ``prange`` with a single-threaded
  BLAS per block; at batch 64 on T threads every block multiplies N/T rows by the *whole*
  W, so W is streamed T times.  Kept for comparison (``derivgrad bench``) and tests.

Measured on the 2-core development machine, batch 64, 2880 → 500, float32, best of 60
(``derivgrad bench --threads 1,2`` shows these rows): at 1 thread NumPy's
BLAS (OpenBLAS 0.3.31) runs the forward in 1.59 ms against 1.85 ms for SciPy's (0.3.30,
the one ``prange`` bodies can call) and no second pool is involved, so 1 thread uses
``"blas"``.  At 2 threads, alone, ``"blas"`` took 0.84 ms, ``"tiles"`` 0.94 ms and
``"rows"`` 1.6 ms; but inside a training step ``"blas"`` leaves NumPy's OpenBLAS workers
spinning next to Numba's OpenMP workers, and on a busy 2-core machine the LeNet step with
``"blas"`` took 2-3x longer than with ``"tiles"`` (interleaved steps, same process).  So
more than one thread uses ``"tiles"``: one pool, each thread reading about 1/T of each
operand.  At 16 threads the grid for fc1's forward (64 × 500, K = 2880) is 1 × 4 × 4 (four
column blocks of W, each over a quarter of K), the split oneDNN picks for this shape;
the row split would stream all of W sixteen times.

.. code-block:: text

    # Forward: [N, in] [in, out] -> [N, out]        y  = x W^T + b
    # dx:      [N, out] [out, in] -> [N, in]        dx = dy W
    # dW:      [out, N] [N, in]  -> [out, in]       dW = dy^T x      (sums over the batch)
"""

import numba
import numpy as np

from . import _threads  # (imports _blas: pins the BLAS that prange bodies call to 1 thread)
from . import _validate as v
from ._gemm_kernels import tiled_gemm
from ._linear_kernels import column_sums, linear_fwd, rows_matmul
from ._workspace import buffer

STRATEGIES = ("blas", "tiles", "rows")
# The forward as yᵀ = W xᵀ (out × batch) rather than y = x Wᵀ where OpenBLAS runs its
# AVX-512 ("SkylakeX") kernels: they run fc1's shape (batch 64, 2880 -> 500) faster that
# way round.  Interleaved CPU time, median of 15-21, machine shared (load 10-11): 1 thread
# 2.69-2.94 -> 2.40-2.62 ms (PyTorch 2.38-2.54); 2 threads ("tiles") 3.00 -> 2.86 ms
# (PyTorch 3.26).  With OPENBLAS_CORETYPE=Haswell (AVX2 kernels) the usual order is the
# faster one (2.08 against 2.13 ms before the transposing pass), so there it stays.  The
# transposing bias pass costs 64 x 500 values.  ``None``: decided from the BLAS on first
# use; tests and benchmarks set ``True``/``False`` to run either in one process.
TRANSPOSED_FORWARD: dict = {"on": None}


def _transposed_forward() -> bool:
    if TRANSPOSED_FORWARD["on"] is None:
        archs = {str(lib["architecture"]).lower() for lib in _threads.blas_info()}
        TRANSPOSED_FORWARD["on"] = "skylakex" in archs
    return bool(TRANSPOSED_FORWARD["on"])


_forced: dict = {"strategy": None}


def force_strategy(name: str | None) -> None:
    """Use ``name`` (one of :data:`STRATEGIES`) for every call, or ``None`` for the default;
    for tests and benchmarks."""
    if name is not None and name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} or None, got {name!r}")
    _forced["strategy"] = name


def strategy(threads: int) -> str:
    """The strategy used at ``threads`` threads (see the module docstring for why)."""
    if _forced["strategy"] is not None:
        return _forced["strategy"]
    if threads == 1 and _threads.outer_blas_threads(1):
        return "blas"
    return "tiles"


def grid(M: int, N: int, K: int, threads: int) -> tuple[int, int, int]:
    """``(tm, tn, tk)`` with ``tm·tn·tk = threads`` minimising the elements one thread
    reads, ``(M/tm + N/tn)·K/tk``, plus the partial sums a K split writes and re-reads
    (``3·M·N/(tm·tn)`` when ``tk > 1``).  Measured at 2 threads: this picks the fastest
    grid for each of the three linear GEMMs of LeNet's fc1."""
    best, best_cost = (1, 1, 1), None
    for tm in range(1, threads + 1):
        if threads % tm:
            continue
        for tn in range(1, threads // tm + 1):
            if (threads // tm) % tn:
                continue
            tk = threads // (tm * tn)
            if tm > M or tn > N or tk > K:
                continue
            cost = (M / tm + N / tn) * K / tk + (3.0 * M * N / (tm * tn) if tk > 1 else 0.0)
            if best_cost is None or cost < best_cost:
                best, best_cost = (tm, tn, tk), cost
    return best


def _tiled(ta, tb, M, N, K, a, lda, b, ldb, out, threads):
    tm, tn, tk = grid(M, N, K, threads)
    part = buffer("gemm_part", tk * M * N if tk > 1 else 1, out.dtype)
    tiled_gemm(ta, tb, M, N, K, a.ravel(), lda, b.ravel(), ldb, out.ravel(), N, tm, tn, tk, part)


def _blocks(rows):
    return max(1, min(rows, numba.get_num_threads()))


def _params(op, x, w):
    x = v.float_array(op, "x", x, 2, "[N, in_features]")
    w = v.float_array(op, "w", w, 2, "[out_features, in_features]")
    v.same_dtype(op, x=x, w=w)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"{op}: w must have shape [out_features, in_features] with in_features = "
            f"{x.shape[1]} (from x {x.shape}), got {w.shape}"
        )
    return x, w


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    r"""``y = x W^T + b``: x ``(N, in_features)``, w ``(out_features, in_features)``,
    b optional ``(out_features,)``; returns ``y (N, out_features)`` in x's dtype."""
    op = "linear_forward"
    x, w = _params(op, x, w)
    if b is not None:
        b = v.vector(op, "b", b, w.shape[0], x.dtype, "[out_features]")
    N, IN = x.shape
    OUT = w.shape[0]
    y = np.empty((N, OUT), dtype=x.dtype)
    if not y.size:
        return y
    how = strategy(numba.get_num_threads())
    with _threads.serial_if(flops=None if how == "blas" else 2 * N * IN * OUT):
        if how == "rows":
            linear_fwd(x, w, b if b is not None else w[0], b is not None, _blocks(N), y)
            return y
        if IN == 0:
            y[...] = 0
        elif _transposed_forward():
            # yᵀ = W xᵀ, then one pass that transposes and adds the bias (see the note)
            yT = buffer("linear_yT", OUT * N, x.dtype).reshape(OUT, N)
            if how == "blas":
                np.matmul(w, x.T, out=yT)
            else:
                _tiled(False, True, OUT, N, IN, w, IN, x, IN, yT, numba.get_num_threads())
            if b is not None:
                np.add(yT.T, b, out=y)
            else:
                y[...] = yT.T
            return y
        elif how == "blas":
            np.matmul(x, w.T, out=y)
        else:
            _tiled(False, True, N, OUT, IN, x, IN, w, IN, y, numba.get_num_threads())
    if b is not None:
        y += b
    return y


def linear_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, *, bias: bool = True, need_dx: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    r"""Gradients of :func:`linear_forward`.

    ``dy (N, out_features)`` → ``(dx, dw, db)``: ``dx = dy W`` ``(N, in)``,
    ``dw = dy^T x`` ``(out, in)``, ``db = Σ_n dy`` ``(out,)`` (``None`` if ``bias=False``);
    ``dx`` is ``None`` if ``need_dx=False``.
    """
    op = "linear_backward"
    x, w = _params(op, x, w)
    dy = v.float_array(op, "dy", dy, 2, "[N, out_features]")
    v.same_dtype(op, x=x, dy=dy)
    v.shape_is(op, "dy", dy, (x.shape[0], w.shape[0]), "[N, out_features]")
    N, IN = x.shape
    OUT = w.shape[0]
    how = strategy(numba.get_num_threads())
    dx = np.empty_like(x) if need_dx else None
    dw = np.empty_like(w)
    # each of the two GEMMs is 2·N·in·out flops
    with _threads.serial_if(flops=None if how == "blas" else 2 * N * IN * OUT):
        threads = numba.get_num_threads()
        if how == "rows" or 0 in (N, IN, OUT):
            if dx is not None:
                rows_matmul(dy, w, _blocks(N), dx)
            # dW = dyᵀ x, split over the rows of dW (the output features): each block owns
            # its rows
            rows_matmul(np.ascontiguousarray(dy.T), x, _blocks(OUT), dw)
        elif how == "blas":
            if dx is not None:
                np.matmul(dy, w, out=dx)
            np.matmul(dy.T, x, out=dw)
        else:
            if dx is not None:
                _tiled(False, False, N, IN, OUT, dy, OUT, w, IN, dx, threads)
            _tiled(True, False, OUT, IN, N, dy, OUT, x, IN, dw, threads)
        db = None
        if bias and how == "rows":
            db = column_sums(dy, _blocks(OUT)).astype(dy.dtype)
        elif bias:
            # float64 accumulation as the parallel column sum does; N·out is small next to
            # the GEMMs and a NumPy reduction wakes no thread pool
            db = dy.sum(axis=0, dtype=np.float64).astype(dy.dtype)
    return dx, dw, db
