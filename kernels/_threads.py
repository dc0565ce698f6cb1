"""One thread count for every pool the kernels use: Numba's and each BLAS library's.

Three pools can run a kernel's work here: Numba's (``prange``), NumPy's OpenBLAS (the
full-size GEMMs that :mod:`.linear` calls from outside Numba's parallel region) and SciPy's
OpenBLAS (the ``np.dot``/:func:`._gemm.gemm` calls made *inside* ``prange``).  The last one
must stay at one thread whatever the count: every Numba thread calls it at once, and a
multithreaded BLAS under a parallel loop runs T² threads on T cores.  :func:`set_threads`
sets the other two to the same ``n`` and is what ``--threads`` and ``DERIVGRAD_THREADS``
call, so training, ``derivgrad bench`` and ``benchmarks/`` configure threads one way.

On a busy machine (a laptop with a browser open, a shared server) a pool that spins or waits
for every worker is a trap: :func:`start_pool` makes Numba's workers sleep when idle,
:func:`default_threads` follows the cores this process may actually use, and
:func:`serial_if` keeps work too small to share out of the pool.  ``derivgrad bench --busy N``
measures all three beside N busy-loop processes.
"""

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numba
from threadpoolctl import ThreadpoolController

from . import _blas

ENV = "DERIVGRAD_THREADS"
_state: dict = {"threads": None}

# Variables with which a user has already chosen how OpenMP threads wait (GNU libgomp reads
# the first two, LLVM's and Intel's runtimes the first and the last); any of them set, we
# leave waiting alone.
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
_OPENMP_LIBS = ("libgomp", "libomp", "libiomp")
WAIT: dict[str, object] = {}


def _openmp_mapped() -> set[str]:
    """Paths of the OpenMP runtimes mapped into this process (empty where /proc is absent)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return set()
    return {p for p in paths if any(lib in os.path.basename(p) for lib in _OPENMP_LIBS)}


def start_pool() -> dict[str, object]:
    """Start Numba's thread pool with workers that sleep when idle; returns :data:`WAIT`.

    Why: GNU libgomp's workers spin for 300,000 iterations (several ms) after every parallel
    region before sleeping.  With a core taken by other work, the spinning workers take
    turns on the core with the worker whose chunk the region waits for.  On the 2-core
    development machine, with two busy-loop processes beside it, the LeNet step at 2 threads
    took 270-281 ms with the spinning default, 26 ms with ``OMP_WAIT_POLICY=PASSIVE`` (21 ms
    at 1 thread); with other processes' work at load 5-8 and no busy loops, 393 ms against
    40 ms, and ``GOMP_SPINCOUNT=20000`` (a short spin, then sleep) 110 ms (these three with
    ``OPENBLAS_THREAD_TIMEOUT=4``).  So idle workers sleep at once:
    ``OMP_WAIT_POLICY=PASSIVE`` is in the environment while Numba loads its OpenMP layer
    (libgomp reads it when loaded) and removed again afterwards, so that another library
    loaded later (PyTorch's own OpenMP runtime) keeps its own default.
    A user who set any of :data:`WAIT_VARS` keeps that choice.

    The layer: OpenMP first (the fastest here, and the one whose waiting we can set), then
    Numba's workqueue (its workers block on condition variables: passive by construction),
    then TBB (whose workers spin before sleeping, with no setting to change it); a user's
    ``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY`` wins.
    """
    if WAIT:
        return WAIT
    user = next((v for v in WAIT_VARS if v in os.environ), None)
    if not any(
        v in os.environ for v in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY")
    ):
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]  # type: ignore[attr-defined]
    before = _openmp_mapped()
    if user is None:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from numba.np.ufunc.parallel import _launch_threads

        _launch_threads()
    finally:
        if user is None:
            os.environ.pop("OMP_WAIT_POLICY", None)
    layer = numba.threading_layer()
    loaded = sorted(_openmp_mapped() - before)
    if layer != "omp":
        policy = "passive" if layer == "workqueue" else "the layer's own (spins, then sleeps)"
    elif user is not None:
        policy = f"the user's {user}={os.environ[user]}"
    elif loaded:
        policy = "passive (OMP_WAIT_POLICY=PASSIVE)"
    else:
        # the OpenMP runtime was in the process before Numba loaded its layer (another
        # library brought it): it read its settings then, without ours
        policy = "the OpenMP runtime's default (it was loaded before derivgrad.kernels)"
    WAIT.update(layer=layer, policy=policy, openmp=loaded)
    return WAIT


def _cgroup_limit_v2(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period) if int(period) > 0 and int(quota) > 0 else None
    except ValueError:
        return None


def _cgroup_limit_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _up_to(base: Path, path: str) -> list[Path]:
    """``base/path`` and each folder above it, up to ``base`` itself."""
    parts = [q for q in path.strip("/").split("/") if q and q != ".."]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_limit(
    root: str | os.PathLike[str] = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup"
) -> float | None:
    """The CPU bandwidth this process's control groups allow, in cores (``1.5`` for a quota
    of 150 ms per 100 ms period), or ``None`` when no quota applies.

    Reads cgroup v2's ``cpu.max`` and v1's ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` in the
    process's own group and each group above it (a parent's quota binds its children too),
    under ``root`` (arguments for tests: a fake tree)."""
    try:
        lines = Path(self_cgroup).read_text().splitlines()
    except OSError:
        return None
    base = Path(root)
    limits: list[float | None] = []
    for line in lines:
        try:
            _, controllers, path = line.split(":", 2)
        except ValueError:
            continue
        if controllers == "":
            limits += [_cgroup_limit_v2(d) for d in _up_to(base, path)]
        elif "cpu" in controllers.split(","):
            for mount in {controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu"}:
                limits += [_cgroup_limit_v1(d) for d in _up_to(base / mount, path)]
    found = [x for x in limits if x is not None]
    return min(found) if found else None


def available_cpus(
    root: str | os.PathLike[str] = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup"
) -> int:
    """The cores this process may use: its affinity mask (``taskset``, an MPI launcher's
    binding, a container's cpuset), cut to its cgroup CPU quota rounded *down*.

    Why down: with a quota of 1.5 cores, two threads use up the period's 150 ms in 75 ms
    and are both frozen for the last 25 ms of every 100 ms, mid-region; one thread is never
    throttled."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit(root, self_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def default_threads() -> int:
    """The count :func:`set_threads` takes when given none: ``DERIVGRAD_THREADS`` when set;
    else all of Numba's pool when the user sized it (``NUMBA_NUM_THREADS``); else the
    cores actually available (:func:`available_cpus`), at most Numba's pool.

    Numba sizes its pool from the affinity mask alone: in a container limited to one core
    by a quota on a 16-core host it would run 16 threads that the quota freezes in turn.

    The load (other processes' work) is not followed.  With workers that sleep when idle
    (:func:`start_pool`), a worker woken for a region is ahead of a busy loop in the
    scheduler's queue, having slept, so 2 threads beside busy neighbours did not stall;
    and 2 threads get more of a machine shared with other work than 1 does.  Measured on the
    2-core development machine with two busy-loop processes beside the LeNet step and other
    work at load 9-9.4, three interleaved runs: 1 thread 145, 129 ms; 2 threads 78, 109 ms;
    a count following the load (busy CPU time in /proc/stat minus our own, re-read every
    0.2 s), which chose 1 thread, 158, 113 ms.  A count that changes during a run would also
    change how reductions are cut, and with them float rounding, from one run to the next."""
    env = os.environ.get(ENV)
    if env not in (None, ""):
        return parse_threads(env, ENV)
    if os.environ.get("NUMBA_NUM_THREADS", "").strip():
        return max_threads()
    return min(max_threads(), available_cpus())


def start() -> None:
    """What importing :mod:`derivgrad.kernels` does: start the pool with sleeping workers
    and, where the cores available are fewer than Numba's pool (a CPU quota), run on those
    (this Python thread; :func:`set_threads` sets every pool)."""
    start_pool()
    if not any(os.environ.get(v, "").strip() for v in (ENV, "NUMBA_NUM_THREADS")):
        n = min(max_threads(), available_cpus())
        if n < numba.get_num_threads():
            numba.set_num_threads(n)


def thread_settings() -> dict[str, object]:
    """How the kernels' threads are set up now: ``layer`` (Numba's threading layer),
    ``wait`` (how its idle workers wait), ``threads`` (the current count),
    ``default`` (what :func:`set_threads` picks without a count), ``available_cpus``
    (affinity and cgroup quota), ``cgroup_quota`` (cores, or None) and ``pool`` (Numba's
    pool size)."""
    start_pool()
    try:
        default: object = default_threads()
    except ValueError as e:
        default = str(e)
    return dict(
        layer=WAIT["layer"],
        wait=WAIT["policy"],
        threads=get_threads(),
        default=default,
        available_cpus=available_cpus(),
        cgroup_quota=cgroup_cpu_limit(),
        pool=max_threads(),
    )


# Work below these sizes runs on the calling thread alone (see serial_if).
SMALL_BYTES = 1 << 19
SMALL_FLOPS = 1 << 21
# What serial_if compares with, read at each call: the test suite sets both to 0 so that its
# small shapes still go through the parallel cuts that large ones take.
serial_below = {"bytes": SMALL_BYTES, "flops": SMALL_FLOPS}


@contextlib.contextmanager
def serial_if(*, nbytes: int | None = None, flops: int | None = None) -> Iterator[None]:
    """Run the block on one thread when the work is small: ``nbytes`` read and written (a
    memory-bound kernel) under ``serial_below["bytes"]``, or ``flops`` (a GEMM) under
    ``serial_below["flops"]``; ``None`` for neither.  Numba's parallel region wakes every
    worker and ends when the last one is done, so a worker that must wait for a core
    delays the region by a scheduler slice (milliseconds) while the work itself takes
    microseconds.  :data:`SMALL_BYTES` (memory-bound kernels: bytes read and written) and
    :data:`SMALL_FLOPS` (GEMMs) are about 50 µs of one core's work, the order of waking a
    sleeping worker.  Measured here under other work (load 9), median of 300 calls, 1 / 2
    threads: ReLU over 128 KiB 15 / 24 µs, over 512 KiB 56 / 66 µs; the 64×10×500 GEMM of
    LeNet's fc2 (0.64 MFLOP) 9.8 / 30 µs.
    """
    small = (nbytes is not None and nbytes < serial_below["bytes"]) or (
        flops is not None and flops < serial_below["flops"]
    )
    n = numba.get_num_threads() if small else 1
    if n == 1:
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(n)


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

    ``n=None`` takes :func:`default_threads` (``DERIVGRAD_THREADS`` when set, else the
    cores this process may use).  Sets
    Numba's pool (``numba.set_num_threads``, for this Python thread) and every BLAS
    library called from outside parallel loops (threadpoolctl) to ``n``, and keeps the
    BLAS used inside ``prange`` at one thread.  Raises ``ValueError`` naming the argument
    (``name``, e.g. ``"--threads"``, or the variable) for a count that is not an integer in
    ``[1, max_threads()]``.
    """
    start_pool()
    n = default_threads() if n is None else parse_threads(n, name)
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
