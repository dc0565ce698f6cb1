"""Single-threaded BLAS for GEMMs called from inside Numba's parallel loops.

Numba's ``np.dot`` calls SciPy's bundled OpenBLAS (through ``scipy.linalg.cython_blas``), a
library distinct from NumPy's.  Our kernels call it from every thread of a ``prange``; if it
were multithreaded too, 2 cores would run 4 spinning threads and a step would slow down
several times.  So we pin *that library only* to one thread, leaving NumPy's BLAS alone.
"""

import scipy.linalg.cython_blas  # noqa: F401  (loads the library so it can be found)
from threadpoolctl import ThreadpoolController


def _pin_scipy_blas():
    pinned = []
    for lib in ThreadpoolController().lib_controllers:
        path = lib.filepath or ""
        if lib.user_api == "blas" and "scipy" in path and "numpy" not in path:
            lib.set_num_threads(1)
            pinned.append(path)
    return pinned


PINNED = _pin_scipy_blas()
