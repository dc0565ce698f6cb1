"""Numba settings shared by every kernel module (one place to change them).

``cache=True`` writes compiled kernels next to the sources (or to ``NUMBA_CACHE_DIR``), so
only the first run on a machine pays the compile.  ``fastmath`` stays off: kernels must
propagate NaN and inf as IEEE arithmetic says, and the ``nnan``/``ninf`` flags would let
LLVM assume they never occur.
"""

from numba import njit

parallel = njit(parallel=True, cache=True, nogil=True)
serial = njit(cache=True, nogil=True)
