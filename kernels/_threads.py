"""One thread count for every pool the kernels use: Numba's and each BLAS library's.

Three pools can run a kernel's work here: Numba's (``prange``), NumPy's OpenBLAS (the
full-size GEMMs that :mod:`.linear` calls from outside Numba's parallel region) and SciPy's
OpenBLAS (the ``np.dot``/:func:`._gemm.gemm` calls made *inside* ``prange``).  The last one
must stay at one thread whatever the count: every Numba thread calls it at once, and a
multithreaded BLAS under a parallel loop runs T² threads on T cores.  :func:`set_threads`
sets the other two to the same ``n`` and is what ``--threads`` and ``DERIVGRAD_THREADS``
call, so training, ``derivgrad bench`` and ``benchmarks/`` configure threads one way.
"""

import os

import numba
from threadpoolctl import ThreadpoolController

from . import _blas

ENV = "DERIVGRAD_THREADS"
_state: dict = {"threads": None}


def _outer_blas():
    """threadpoolctl controllers of the BLAS libraries called from outside ``prange``."""
    return [
        lib
        for lib in ThreadpoolController().lib_controllers
        if lib.user_api == "blas" and (lib.filepath or "") not in _blas.PINNED
    ]


def max_threads() -> int:
    """The most threads Numba's pool can run (``NUMBA_NUM_THREADS``, fixed at start-up)."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def parse_threads(value: object, name: str = "threads") -> int:
    """``value`` as a thread count in ``[1, max_threads()]``, else a one-line ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    try:
        n = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if n > max_threads():
        raise ValueError(
            f"{name} = {n} exceeds the {max_threads()} threads Numba's pool was started "
            f"with (set NUMBA_NUM_THREADS before starting Python to allow more)"
        )
    return n


def set_threads(n: int | None = None, *, name: str = "threads") -> int:
    """Run every kernel pool on ``n`` threads; returns ``n``.

    ``n=None`` takes ``DERIVGRAD_THREADS`` when set, else all of Numba's threads.  Sets
    Numba's pool (``numba.set_num_threads``, for this Python thread) and every BLAS
    library called from outside parallel loops (threadpoolctl) to ``n``, and keeps the
    BLAS used inside ``prange`` at one thread.  Raises ``ValueError`` naming the argument
    (``name``, e.g. ``"--threads"``, or the variable) for a count that is not an integer in
    ``[1, max_threads()]``.
    """
    if n is None:
        env = os.environ.get(ENV)
        n = parse_threads(env, ENV) if env not in (None, "") else max_threads()
    else:
        n = parse_threads(n, name)
    numba.set_num_threads(n)
    libs = _outer_blas()
    for lib in libs:
        lib.set_num_threads(n)
    _blas.pin()
    _state.update(threads=n, outer=bool(libs))
    return n


def blas_info() -> list[dict[str, object]]:
    """The BLAS libraries loaded in this process, as threadpoolctl reports them: ``filepath``,
    ``version``, ``architecture`` (the CPU kernels OpenBLAS chose at load: it reads
    ``OPENBLAS_CORETYPE`` then, which some machines set to an older core),
    ``num_threads`` and ``inside_prange`` (whether it is the one-thread library our parallel
    loops call)."""
    return [
        {
            "filepath": lib.filepath,
            "version": lib.version,
            "architecture": lib.info().get("architecture"),
            "num_threads": lib.num_threads,
            "inside_prange": (lib.filepath or "") in _blas.PINNED,
        }
        for lib in ThreadpoolController().lib_controllers
        if lib.user_api == "blas"
    ]


def get_threads() -> int:
    """The count the kernels run on now (Numba's pool, as :func:`set_threads` left it)."""
    return int(numba.get_num_threads())


def outer_blas_threads(n: int) -> bool:
    """Make the outside-``prange`` BLAS run ``n`` threads (if it is not already); returns
    whether such a library exists (distinct from the pinned one)."""
    if _state["threads"] != n:
        libs = _outer_blas()
        for lib in libs:
            lib.set_num_threads(n)
        _state["threads"] = n
        _state["outer"] = bool(libs)
    return bool(_state.get("outer", True))
