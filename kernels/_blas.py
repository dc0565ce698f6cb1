"""Single-threaded BLAS for GEMMs called from inside Numba's parallel loops.

Numba's ``np.dot`` calls SciPy's bundled OpenBLAS (through ``scipy.linalg.cython_blas``), a
library distinct from NumPy's.  Our kernels call it from every thread of a ``prange``; if it
were multithreaded too, 2 cores would run 4 spinning threads and a step would slow down
several times.  So we pin *that library only* to one thread, leaving NumPy's BLAS (called
from outside parallel loops, see :mod:`._threads`) alone.
"""

import scipy.linalg.cython_blas  # noqa: F401  (loads the library so it can be found)
from threadpoolctl import ThreadpoolController


def _scipy_blas():
    return [
        lib
        for lib in ThreadpoolController().lib_controllers
        if lib.user_api == "blas"
        and "scipy" in (lib.filepath or "")
        and "numpy" not in (lib.filepath or "")
    ]


def pin():
    """Set SciPy's BLAS (the one ``prange`` bodies call) to one thread; returns its paths."""
    libs = _scipy_blas()
    for lib in libs:
        lib.set_num_threads(1)
    return [lib.filepath for lib in libs]


PINNED = pin()
