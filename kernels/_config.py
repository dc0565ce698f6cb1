"""Numba settings shared by every kernel module (one place to change them).

``cache=True`` writes compiled kernels next to the sources (or to ``NUMBA_CACHE_DIR``), so
only the first run on a machine pays the compile; :mod:`._cache` makes a change to any
kernel source recompile every kernel.  ``fastmath`` stays off: kernels must
propagate NaN and inf as IEEE arithmetic says, and the ``nnan``/``ninf`` flags would let
LLVM assume they never occur.
"""

from numba import njit

from . import _cache  # noqa: F401  (stamps every kernel's cache with all kernel sources)

parallel = njit(parallel=True, cache=True, nogil=True)
serial = njit(cache=True, nogil=True)
# Compiled into each caller: a call costs about 120 ns, as much as a tile row's work.
inline = njit(cache=True, nogil=True, inline="always")
