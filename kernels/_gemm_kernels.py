"""Parallel GEMM partitioned by the data: a grid of ``tm × tn`` output tiles, each tile's
inner dimension optionally split in ``tk`` slices whose partial products are summed.

Unit ``u = (i, j, s)`` multiplies rows ``i`` of ``op(A)`` by columns ``j`` of ``op(B)``
over slice ``s`` of the inner dimension with one single-threaded BLAS call
(:func:`._gemm.gemm`).  With ``tk == 1`` it writes its own tile of ``C``; otherwise it
writes its own tile of ``part[s]`` and a second parallel loop sums the slices into ``C``,
each iteration owning whole rows.  No two iterations write one element either way.
"""

from numba import prange

from ._config import parallel
from ._gemm import gemm


@parallel
def tiled_gemm(ta, tb, M, N, K, a, lda, b, ldb, c, ldc, tm, tn, tk, part):
    """``C (M, N) = op(A) (M, K) · op(B) (K, N)`` on flat row-major arrays (see module).

    ``part`` is a flat workspace of at least ``tk*M*N`` elements when ``tk > 1``.
    """
    units = tm * tn * tk
    for u in prange(units):
        s = u % tk
        j = (u // tk) % tn
        i = u // (tk * tn)
        m0, m1 = i * M // tm, (i + 1) * M // tm
        n0, n1 = j * N // tn, (j + 1) * N // tn
        k0, k1 = s * K // tk, (s + 1) * K // tk
        ia = k0 * lda + m0 if ta else m0 * lda + k0
        ib = n0 * ldb + k0 if tb else k0 * ldb + n0
        # tk == 1: the unit's own tile of C; else its tile of slice s of the workspace
        out = c if tk == 1 else part
        io = m0 * ldc + n0 if tk == 1 else s * M * N + m0 * N + n0
        ldo = ldc if tk == 1 else N
        gemm(ta, tb, m1 - m0, n1 - n0, k1 - k0, a, ia, lda, b, ib, ldb, 0.0, out, io, ldo)
    if tk > 1:
        for i in prange(M):
            for j in range(N):
                c[i * ldc + j] = part[i * N + j]
            for s in range(1, tk):
                base = s * M * N + i * N
                for j in range(N):
                    c[i * ldc + j] += part[base + j]
