"""A strided GEMM callable from compiled code: ``C = A·B + beta·C`` on row-major blocks.

Numba's ``np.dot`` wants contiguous operands and always overwrites its output; tiling a
GEMM over both output dimensions, or splitting its inner dimension, needs sub-blocks with
a leading dimension and accumulation.  This calls the same single-threaded BLAS that
``np.dot`` uses inside kernels (SciPy's OpenBLAS through Numba's ``numba_xxgemm`` helper,
resolved by symbol name, so ``cache=True`` stays valid).
"""

import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.extending import overload
from numba.np.linalg import _BLAS, ensure_blas

ensure_blas()
_SGEMM = _BLAS.numba_xxgemm(types.float32)
_DGEMM = _BLAS.numba_xxgemm(types.float64)


def gemm(ta, tb, m, n, k, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    """``C[m, n] = op(A)[m, k] · op(B)[k, n] + beta·C`` with row-major blocks of flat arrays.

    ``a``, ``b``, ``c`` are 1-D arrays; a block starts at index ``ia``/``ib``/``ic`` and its
    rows are ``lda``/``ldb``/``ldc`` elements apart.  ``ta`` true means ``A`` is stored as
    its transpose (``k`` rows of ``m``), likewise ``tb``.  Compiled code calls BLAS; called
    from Python (a generated module run with Numba's JIT off) it is :func:`gemm_scaled`'s
    NumPy form.
    """
    gemm_scaled(ta, tb, m, n, k, 1.0, a, ia, lda, b, ib, ldb, beta, c, ic, ldc)


def _block(x, i, ld, rows, cols):
    if rows > 0 and cols > 0 and (i < 0 or cols > ld or i + (rows - 1) * ld + cols > x.size):
        raise ValueError("gemm: a block reaches outside its array")
    return np.array([[x[i + r * ld + q] for q in range(cols)] for r in range(rows)], x.dtype)


def gemm_scaled(ta, tb, m, n, k, alpha, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    """``C = alpha · op(A) · op(B) + beta · C`` (see :func:`gemm`).  In Python: NumPy on
    copies of the blocks, the same bounds checks, ``beta == 0`` ignoring what ``C`` held."""
    if m <= 0 or n <= 0:
        return
    C = _block(c, ic, ldc, m, n)
    out = np.zeros((m, n), c.dtype)
    if k > 0:
        A = _block(a, ia, lda, *((k, m) if ta else (m, k)))
        B = _block(b, ib, ldb, *((n, k) if tb else (k, n)))
        out = alpha * ((A.T if ta else A) @ (B.T if tb else B))
    if beta != 0:
        out = out + beta * C
    for r in range(m):
        c[ic + r * ldc : ic + r * ldc + n] = out[r]


@overload(gemm)
def _gemm_impl(ta, tb, m, n, k, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    def impl(ta, tb, m, n, k, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
        gemm_scaled(ta, tb, m, n, k, 1.0, a, ia, lda, b, ib, ldb, beta, c, ic, ldc)

    return impl


@overload(gemm_scaled)
def _gemm_scaled_impl(ta, tb, m, n, k, alpha, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    dt = getattr(a, "dtype", None)
    if dt == types.float32:
        fn, kind = _SGEMM, ord("s")
    elif dt == types.float64:
        fn, kind = _DGEMM, ord("d")
    else:
        raise TypingError("gemm: float32 or float64 arrays only")

    if getattr(b, "dtype", None) != dt or getattr(c, "dtype", None) != dt:
        raise TypingError("gemm: a, b and c must have one dtype")

    def impl(ta, tb, m, n, k, alpha, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
        if m <= 0 or n <= 0:
            return
        # the last element each operand block reaches must lie inside its array
        ar, ac = (k, m) if ta else (m, k)
        br, bc = (n, k) if tb else (k, n)
        if (ic < 0 or n > ldc or ic + (m - 1) * ldc + n > c.size) or (
            k > 0
            and (
                ia < 0
                or ib < 0
                or ac > lda
                or bc > ldb
                or ia + (ar - 1) * lda + ac > a.size
                or ib + (br - 1) * ldb + bc > b.size
            )
        ):
            raise ValueError("gemm: a block reaches outside its array")
        if k <= 0:  # C = beta·C; BLAS would reject the leading dimensions of empty operands
            for i in range(m):
                for j in range(n):
                    c[ic + i * ldc + j] = 0 if beta == 0 else beta * c[ic + i * ldc + j]
            return
        alp = np.full(1, alpha, dtype=c.dtype)
        bet = np.full(1, beta, dtype=c.dtype)
        # Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: swap the operands and dimensions.
        fn(
            kind,
            ord("t") if tb else ord("n"),
            ord("t") if ta else ord("n"),
            n,
            m,
            k,
            alp.ctypes,
            b[ib:].ctypes,
            ldb,
            a[ia:].ctypes,
            lda,
            bet.ctypes,
            c[ic:].ctypes,
            ldc,
        )

    return impl
