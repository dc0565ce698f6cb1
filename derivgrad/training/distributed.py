r"""Data-parallel training over MPI: ``mpiexec -n P derivgrad train …``.

Each of the P ranks holds the whole model.  For every *global* batch of ``B`` images (the
same permutation on every rank, so the run does not depend on P) rank ``r`` takes the
contiguous shard ``[r B/P, (r+1) B/P)``, runs forward and backward on it, and the ranks
average their gradients with one in-place ``Allreduce`` on a flat, preallocated float32
buffer.  Since the loss of a shard is its mean over ``B/P`` images,

.. math::
    \nabla L = \frac{1}{B}\sum_{i<B} \nabla \ell_i
             = \frac{1}{P}\sum_{r<P} \frac{P}{B}\sum_{i \in r} \nabla \ell_i ,

so the average of the shard gradients is the gradient of the global batch, and every rank
applies the same update.  Batch-norm layers become :class:`SyncBatchNorm2d`: the channel
statistics are those of the whole global batch (two small float64 ``Allreduce``\ s in the
forward, one in the backward), so ``--batchnorm`` trains the same model as one process.

``mpi4py`` is imported only when the process was started by an MPI launcher (or when asked
with ``force=True``): users without MPI never load it.  A rank that fails calls
``MPI_Abort`` (see :func:`abort_on_error`), so the launcher ends every rank at once; a rank
that dies is noticed by the others while they wait (the waits poll, see
:meth:`Communicator.wait`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn

import numpy as np

from ..errors import DistributedError, UsageError
from .model import BatchNorm2d

# Environment variables through which launchers tell a process how many they started:
# MPICH's and Intel MPI's Hydra (PMI_SIZE), Open MPI (OMPI_COMM_WORLD_SIZE), MVAPICH.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
# Slurm's special step ids (batch, extern, interactive...) start at 0xFFFFFFF0
_SLURM_SPECIAL_STEP = 0xFFFFFFF0


def launched_size(environ: Mapping[str, str] | None = None) -> int | None:
    """How many processes the launcher says it started, or ``None`` when no MPI launcher
    (``mpiexec``, ``mpirun``, ``srun``) started this process."""
    env = os.environ if environ is None else environ
    sizes = []
    for var in _SIZE_VARS:
        if env.get(var, "").isdigit():
            sizes.append(int(env[var]))
    step = env.get("SLURM_STEP_ID", "")
    if step.isdigit() and int(step) < _SLURM_SPECIAL_STEP:
        n = env.get("SLURM_STEP_NUM_TASKS", "")
        if n.isdigit():
            sizes.append(int(n))
    return max(sizes) if sizes else None


def _launched_rank(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    for var in (*_RANK_VARS, "SLURM_PROCID"):
        if env.get(var, "").isdigit():
            return int(env[var])
    return 0


def _import_mpi(why: str) -> Any:
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise UsageError(
            f"{why}, but mpi4py cannot be imported ({e}); install it with "
            f"pip install 'derivgrad[mpi]' (or build mpi4py against your site MPI)"
        ) from None
    return MPI


def detect(force: bool = False) -> Communicator | None:
    """The communicator of this run, or ``None`` for a plain single-process run.

    MPI is used when an MPI launcher started the process, or when ``force`` is true.
    Raises :class:`UsageError` when the launcher started P > 1 processes but MPI's world
    holds 1: the ``mpiexec`` belongs to another MPI than the one mpi4py was built with,
    so every rank would train alone (and P copies would write the same checkpoint).
    """
    size = launched_size()
    if size is None and not force:
        return None
    if size is not None and size <= 1 and not force:
        try:  # a world of one under a launcher: MPI if it is there, plain otherwise
            import mpi4py  # noqa: F401
        except ImportError:
            return None
    MPI = _import_mpi(
        f"this process was started by an MPI launcher as one of {size}"
        if size is not None
        else "--mpi was given"
    )
    world = MPI.COMM_WORLD
    if size is not None and size > 1 and world.Get_size() == 1:
        raise UsageError(
            f"the launcher started {size} processes but mpi4py's MPI "
            f"({MPI.Get_library_version().splitlines()[0].strip()}) sees a world of 1 in each "
            f"(rank {_launched_rank()}): the mpiexec on PATH is from a different MPI than "
            f"mpi4py's; use the mpiexec of that MPI (pip install 'derivgrad[mpi]' puts one "
            f"next to python) or rebuild mpi4py against your site MPI"
        )
    return Communicator(world, MPI)


class Communicator:
    """The world communicator plus what training needs from it.

    ``rank``/``size``: this process and the world; ``local_rank``/``local_size``: the same
    within this node (ranks that share memory); ``peers``: ``[(rank, pid, host)]`` for every
    rank, used to name a rank that died.
    """

    def __init__(self, comm: Any, MPI: Any) -> None:
        self.comm, self.MPI = comm, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.local = comm.Split_type(MPI.COMM_TYPE_SHARED, self.rank)
        self.local_rank, self.local_size = self.local.Get_rank(), self.local.Get_size()
        self.host = socket.gethostname()
        self.peers: list[tuple[int, int, str]] = comm.allgather((self.rank, os.getpid(), self.host))
        affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self._local_affinities: list[list[int]] = self.local.allgather(affinity)
        self.nodes = len({h for _, _, h in self.peers})
        # while a wait spins, this says whether the user asked to stop (see wait())
        self.stop_requested: Callable[[], bool] = lambda: False
        self.grace_s = 10.0
        self._buf: np.ndarray | None = None
        self._layout: list[tuple[str, int, int, tuple[int, ...]]] = []
        self._views: dict[str, np.ndarray] = {}
        # seconds spent waiting for the reductions after the backward, over steps
        self.timings = {"exposed_s": 0.0, "steps": 0}
        self.overlap = True
        self.sharded: ShardedOptimizer | None = None
        # split the optimizer's update over the ranks (--shard-optimizer); an execution
        # choice like the thread count, not part of the training configuration
        self.shard_optimizer = False

    # ---- who and where ---------------------------------------------------------------
    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        """One line for the log: ranks, nodes, the pid of every rank (to name a dead one)."""
        by_host: dict[str, list[str]] = {}
        for r, pid, h in self.peers:
            by_host.setdefault(h, []).append(f"{r}:{pid}")
        where = "; ".join(f"{h} (rank:pid {' '.join(v)})" for h, v in by_host.items())
        return f"MPI: {self.size} ranks on {self.nodes} node(s): {where}"

    def default_threads(self) -> int:
        """Cores of this node shared among its ranks: ``cores // ranks-on-node`` (at least
        1), never more threads in all than cores.  When the launcher bound each rank to its
        own cores (the affinities differ), a rank uses the cores it was given."""
        mine = self._local_affinities[self.local_rank] or list(range(os.cpu_count() or 1))
        if all(a == self._local_affinities[0] for a in self._local_affinities):
            return max(1, len(mine) // self.local_size)
        return max(1, len(mine))

    # ---- the batch ---------------------------------------------------------------------
    def check_batch(self, batch_size: int) -> None:
        """Raise :class:`UsageError` unless every rank gets the same, non-empty shard."""
        P = self.size
        if batch_size < P:
            raise UsageError(
                f"--batch-size {batch_size} is smaller than the {P} MPI ranks: every rank needs "
                f"at least one image of each batch; use --batch-size >= {P} or fewer ranks"
            )
        if batch_size % P:
            lo, hi = batch_size - batch_size % P, batch_size + P - batch_size % P
            raise UsageError(
                f"--batch-size {batch_size} (the global batch) is not divisible by the {P} MPI "
                f"ranks; use a multiple of {P} such as {lo} or {hi}, or launch a number of "
                f"ranks that divides {batch_size}"
            )

    # ---- start-up agreement ---------------------------------------------------------------
    def agree(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on every rank and reach one verdict: if it raised a user error
        (:class:`DerivgradError`) on any rank, rank 0 raises it (once, for the command line to
        print on its own line; prefixed with the failing rank unless every rank failed alike)
        and the others exit with status 2 in silence.  Both carry ``all_ranks`` so that
        :func:`abort_on_error` lets them end the job normally instead of racing an
        ``MPI_Abort`` against rank 0's message.  ``fn`` may call collectives if every rank
        reaches them."""
        from .. import errors

        try:
            result, err = fn(), None
        except errors.DerivgradError as e:
            result, err = None, (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        verdicts = self.comm.allgather(err)
        failed = [(r, v) for r, v in enumerate(verdicts) if v is not None]
        if not failed:
            return result
        if not self.is_root:
            raise _AgreedExit(2)
        rank, (name, msg) = failed[0]
        if len(failed) < self.size or len({v for _, v in failed}) > 1:
            msg = f"rank {rank} of {self.size}: {msg}"
        cls = getattr(errors, name, None)
        same = isinstance(cls, type) and issubclass(cls, errors.DerivgradError)
        verdict: Exception = cls(msg) if same else UsageError(msg)  # type: ignore[misc]
        verdict.all_ranks = True  # type: ignore[attr-defined]
        raise verdict

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Raise :class:`UsageError` on every rank unless all ranks were given the same
        ``settings`` (every option that changes the numbers, and a fingerprint of the data):
        ranks launched with different ``--normalize`` would otherwise train on differently
        scaled images without a word."""
        everyone: list[dict[str, Any]] = self.comm.allgather(dict(settings))
        for key in settings:
            values = [s.get(key) for s in everyone]
            if any(v != values[0] or type(v) is not type(values[0]) for v in values[1:]):
                r = next(i for i, v in enumerate(values) if v != values[0])
                raise UsageError(
                    f"the MPI ranks were given different {key}: rank 0 has {values[0]!r}, "
                    f"rank {r} has {values[r]!r}; launch every rank with the same settings"
                )

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's contiguous slice of a global batch's indices ``idx (B,)``."""
        n = len(idx) // self.size
        return idx[self.rank * n : (self.rank + 1) * n]

    # ---- collectives -------------------------------------------------------------------
    def wait(self, req: Any) -> None:
        """Complete a non-blocking operation by polling, not by a blocking ``Wait``: Python
        signal handlers keep running, and a rank on this node that died is named (the
        launcher ends the job; an MPI call would otherwise block forever)."""
        if req.Test():
            return
        t0 = last = time.monotonic()
        while not req.Test():
            now = time.monotonic()
            if now - t0 > 0.002:
                time.sleep(0.0001)  # past a short spin, give the core to the other ranks
            if now - last > 0.2:
                last = now
                self._check_peers()
                if self.stop_requested() and now - t0 > self.grace_s:
                    raise DistributedError(
                        f"rank {self.rank}: a stop was requested and the other ranks have not "
                        f"answered for {self.grace_s:.0f} s; ending the job. " + self.describe()
                    )

    def _check_peers(self) -> None:
        for r, pid, host in self.peers:
            if host != self.host or r == self.rank:
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                state = "gone"
            except OSError:
                continue  # no /proc here: rely on the launcher
            if state in ("gone", "Z", "X"):
                raise DistributedError(
                    f"rank {r} (pid {pid} on {host}) died; ending the job on every rank. "
                    f"The last checkpoint is intact: rerun with --resume to continue"
                )

    def allreduce_sum(self, a: np.ndarray) -> np.ndarray:
        """``a`` summed over ranks, in place (small arrays: statistics, metrics)."""
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM))
        return a

    def bcast(self, obj: Any) -> Any:
        return self.comm.bcast(obj, root=0)

    def root_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` run by rank 0 alone, its result (or its :class:`DerivgradError`)
        handed to every rank, so that all ranks raise together instead of some hanging."""
        result: Any = None
        error: Exception | None = None
        if self.is_root:
            try:
                result = fn(*args)
            except Exception as e:  # noqa: BLE001  -- re-raised on every rank below
                error = e
        result, error = self.bcast((result, error))
        if error is not None:
            raise error
        return result

    # ---- gradients ---------------------------------------------------------------------
    def _layout_for(self, layers: list[Any]) -> None:
        """One float32 buffer for every parameter gradient, in backward order (last layer
        first): ``_layout`` holds ``(name, layer index, offset, shape)`` per parameter."""
        layout, off = [], 0
        for i in reversed(range(len(layers))):
            for k, p in layers[i].params.items():
                layout.append((f"{i}.{k}", i, off, tuple(p.shape)))
                off += int(p.size)
        self._layout = layout
        self._buf = buf = np.zeros(off, dtype=np.float32)
        # named views of the flat buffer, shaped like the parameters
        self._views = {
            name: buf[off : off + int(np.prod(shape))].reshape(shape)
            for name, _, off, shape in layout
        }

    def step(
        self, net: Any, x: np.ndarray, y: np.ndarray, idx: np.ndarray, stop: bool = False
    ) -> tuple[float, int, dict[str, np.ndarray], bool]:
        """Forward and backward of this rank's shard of the global batch ``idx (B,)``, and
        the gradient average.  Returns ``(loss, correct, grads, stop)``: the global batch's
        mean loss and number of correct predictions (the same on every rank), the averaged
        gradients (views of the flat buffer, named like ``net.named_params()``), and whether
        any rank asked to stop (``stop`` is this rank's vote)."""
        from derivgrad import kernels as K

        if self._buf is None:
            self._layout_for(net.layers)
        assert self._buf is not None
        mine = self.shard(idx)
        xs, ys = x[mine], y[mine]
        logits = net.forward(xs, train=True)
        loss, probs = K.softmax_cross_entropy_forward(logits, ys)
        # loss·n, correct and the stop vote in one tiny reduction, started before the backward
        stats = np.array(
            [loss * len(ys), float((probs.argmax(1) == ys).sum()), float(stop)], np.float64
        )
        reqs = [self.comm.Iallreduce(self.MPI.IN_PLACE, stats, op=self.MPI.SUM)]
        g = K.softmax_cross_entropy_backward(probs, ys)
        if self.size > 1:
            # the average over ranks is the sum of gradients scaled by 1/P; every gradient is
            # linear in the logits' gradient, so scale that (N/P × classes values) instead of
            # the whole buffer after the sum (bitwise the same when P is a power of two)
            g *= np.float32(1.0 / self.size)
        # gradients in backward order; a bucket goes out as soon as its layers are done
        t_comm = 0.0
        start, pos = 0, 0
        for i in reversed(range(len(net.layers))):
            layer = net.layers[i]
            g = layer.backward(g)
            if not layer.params:
                continue
            for k in layer.params:
                name, li, off, shape = self._layout[pos]
                src = layer.grads[k]
                self._buf[off : off + src.size] = src.reshape(-1)
                pos += 1
            end = off + src.size
            # one bucket per ~1 MB or at the end (the last layers' small gradients are sent
            # with the big fully connected one)
            if (
                self.overlap
                and self.sharded is None
                and (end - start) * 4 >= 1 << 20
                and pos < len(self._layout)
            ):
                t = time.perf_counter()
                reqs.append(
                    self.comm.Iallreduce(self.MPI.IN_PLACE, self._buf[start:end], op=self.MPI.SUM)
                )
                t_comm += time.perf_counter() - t
                start = end
            for r in reqs:  # let MPI progress the outstanding reductions
                r.Test()
        t = time.perf_counter()
        if self.sharded is not None:  # each rank receives the sum of its slice only
            sh = self.sharded
            reqs.append(self.comm.Ireduce_scatter(self._buf, sh.gshard, sh.counts, op=self.MPI.SUM))
        else:
            reqs.append(self.comm.Iallreduce(self.MPI.IN_PLACE, self._buf[start:], op=self.MPI.SUM))
        for r in reqs:
            self.wait(r)
        exposed = time.perf_counter() - t
        self.timings["exposed_s"] += exposed + t_comm
        self.timings["steps"] += 1
        return float(stats[0] / len(idx)), int(round(stats[1])), self._views, bool(stats[2])

    def time_allreduce(self, repeats: int = 20) -> float:
        """Seconds of one blocking ``Allreduce`` of the whole gradient buffer (median)."""
        assert self._buf is not None
        ts = []
        scratch = np.zeros_like(self._buf)
        for _ in range(repeats):
            self.comm.Barrier()
            t = time.perf_counter()
            self.comm.Allreduce(self.MPI.IN_PLACE, scratch, op=self.MPI.SUM)
            ts.append(time.perf_counter() - t)
        return float(np.median(ts))

    def check_same_params(self, params: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`DistributedError` if the ranks' parameters differ in any bit (a
        reduction that rounded differently on different ranks would make them drift)."""
        h = np.array(
            [
                np.bitwise_xor.reduce(np.ascontiguousarray(p).view(np.uint32).ravel())
                for p in params.values()
            ],
            dtype=np.int64,
        )
        lo, hi = h.copy(), h.copy()
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, lo, op=self.MPI.MIN))
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, hi, op=self.MPI.MAX))
        if np.any(lo != hi):
            bad = [k for k, a, b in zip(params, lo, hi) if a != b]
            raise DistributedError(f"the ranks' parameters differ ({', '.join(bad)})")

    def abort(self, code: int) -> NoReturn:
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)
        os._exit(code)  # MPI_Abort should not return; if it does, end this rank anyway


class ShardedOptimizer:
    """The optimizer's update split across ranks (ZeRO stage 1, Rajbhandari et al. 2020).

    The parameters move into one flat float32 buffer (the layers keep views of it); rank
    ``r`` owns the slice ``[displs[r], displs[r] + counts[r])``.  A step is then: the summed
    gradients of that slice only (``Reduce_scatter`` instead of ``Allreduce``: the same
    bytes on the wire, half the reduction), the optimizer's elementwise update on the slice
    (1/P of the work and of the optimizer state), and an ``Allgather`` of the updated
    slices into every rank's parameters.  SGD and Adam are elementwise, so every parameter
    gets exactly the update of the replicated optimizer.

    ``state_dict()`` and ``load_state_dict()`` speak the replicated optimizer's format
    (``v.<name>``, ``m.<name>``, ``steps``), so checkpoints do not depend on P; both are
    collective (every rank must call them).
    """

    def __init__(self, dist: Communicator, net: Any, make: Callable[[dict], Any]) -> None:
        if dist._buf is None:
            dist._layout_for(net.layers)
        assert dist._buf is not None
        self.dist, self.net = dist, net
        n, P = dist._buf.size, dist.size
        self.counts = [n // P + (r < n % P) for r in range(P)]
        self.displs = [sum(self.counts[:r]) for r in range(P)]
        lo, hi = self.displs[dist.rank], self.displs[dist.rank] + self.counts[dist.rank]
        self.pbuf = np.empty(n, np.float32)
        for name, i, off, shape in dist._layout:
            k = name.split(".", 1)[1]
            size = int(np.prod(shape))
            self.pbuf[off : off + size] = net.layers[i].params[k].reshape(-1)
            view = self.pbuf[off : off + size].reshape(shape)
            # a layer of derivgrad.nn may hold its parameters in nested layers (a container's
            # params is a fresh dict each time): it puts the view where the parameter lives
            setter = getattr(net.layers[i], "set_param", None)
            if setter is not None:
                setter(k, view)
            else:
                net.layers[i].params[k] = view
        self.gshard = np.zeros(hi - lo, np.float32)
        self.inner = make({"flat": self.pbuf[lo:hi]})
        dist.sharded = self

    @property
    def lr(self) -> float:
        return self.inner.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.inner.lr = value

    @property
    def steps(self) -> int:
        return self.inner.steps

    @steps.setter
    def steps(self, value: int) -> None:
        self.inner.steps = value

    def step(self, grads: Any = None) -> None:
        """Update this rank's slice with its summed gradient, then gather all slices.
        (``grads`` is ignored: the reduced slice is already in ``gshard``.)"""
        self.inner.step({"flat": self.gshard})
        MPI = self.dist.MPI
        req = self.dist.comm.Iallgatherv(
            MPI.IN_PLACE, [self.pbuf, self.counts, self.displs, MPI.FLOAT]
        )
        self.dist.wait(req)

    def _full(self, shard: np.ndarray) -> np.ndarray:
        full = np.empty(self.pbuf.size, np.float32)
        MPI = self.dist.MPI
        self.dist.comm.Allgatherv(shard, [full, self.counts, self.displs, MPI.FLOAT])
        return full

    def state_dict(self) -> dict:
        out: dict = {"steps": self.inner.steps}
        for key, shard in self.inner.state_dict().items():
            if key == "steps":
                continue
            prefix = key[: -len("flat")]
            full = self._full(np.ascontiguousarray(shard, np.float32))
            for name, _, off, shape in self.dist._layout:
                out[prefix + name] = full[off : off + int(np.prod(shape))].reshape(shape)
        return out

    def load_state_dict(self, s: dict) -> None:
        lo = self.displs[self.dist.rank]
        hi = lo + self.counts[self.dist.rank]
        flat: dict = {"steps": s["steps"]}
        for key in self.inner.state_dict():
            if key == "steps":
                continue
            prefix = key[: -len("flat")]
            full = np.empty(self.pbuf.size, np.float32)
            for name, _, off, shape in self.dist._layout:
                full[off : off + int(np.prod(shape))] = np.asarray(s[prefix + name]).reshape(-1)
            flat[key] = full[lo:hi]
        self.inner.load_state_dict(flat)


def _same_optimizer(opt: Any, params: dict) -> Any:
    """A fresh optimizer of ``opt``'s kind and hyper-parameters over ``params``."""
    from .model import SGD, Adam

    if isinstance(opt, SGD):
        return SGD(params, opt.lr, opt.momentum, opt.wd)
    if isinstance(opt, Adam):
        return Adam(params, opt.lr, (opt.b1, opt.b2), opt.eps, opt.wd)
    raise TypeError(f"cannot shard an optimizer of type {type(opt).__name__}")


def make_data_parallel(dist: Communicator, net: Any, opt: Any) -> Any:
    """Make a freshly built ``(net, opt)`` data-parallel: batch norm synchronised, and with
    ``dist.shard_optimizer`` the update split across ranks (:class:`ShardedOptimizer`, built
    with ``opt``'s hyper-parameters; ``opt`` itself is then dropped).  Returns the optimizer
    to use.  With one rank nothing changes."""
    if dist.size == 1:
        return opt
    sync_batchnorm(net, dist)
    if dist.shard_optimizer:
        return ShardedOptimizer(dist, net, lambda p: _same_optimizer(opt, p))
    return opt


def sync_batchnorm(net: Any, dist: Communicator) -> None:
    """Replace ``net``'s batch-norm layers by :class:`SyncBatchNorm2d` (same arrays)."""
    for i, layer in enumerate(net.layers):
        if isinstance(layer, BatchNorm2d) and not isinstance(layer, SyncBatchNorm2d):
            net.layers[i] = SyncBatchNorm2d(layer, dist)
    # a network of derivgrad.nn: its batch norms wrap the same layer, wherever they are nested
    root = getattr(net, "root", None)
    for leaf in root.leaves() if root is not None else ():
        inner = getattr(leaf, "inner", None)
        if isinstance(inner, BatchNorm2d) and not isinstance(inner, SyncBatchNorm2d):
            leaf.inner = SyncBatchNorm2d(inner, dist)


class SyncBatchNorm2d(BatchNorm2d):
    r"""Batch norm whose training statistics are those of the global batch.

    Forward: ``μ = Σ_r n_r μ_r / M`` and ``σ² = Σ_r n_r (σ_r² + (μ_r − μ)²) / M`` over the
    ranks' shards (``M = Σ n_r``; the two-pass moments of the whole batch, combined in
    float64).  Backward: the per-channel sums ``Σ dy`` and ``Σ dy x̂`` are summed over
    ranks before ``dx = γσ⁻¹(dy − Σdy/M − x̂ Σdy x̂/M)``.  ``dγ``, ``dβ`` stay the
    shard's sums (the gradient average of :meth:`Communicator.step` completes them).
    Evaluation uses the running statistics, as the plain layer does.
    """

    def __init__(self, bn: Any, dist: Communicator) -> None:
        self.__dict__.update(bn.__dict__)  # the same parameter and buffer arrays
        self.dist = dist

    def forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        if not train:
            return super().forward(x, train)
        from derivgrad.kernels._batchnorm_kernels import channel_moments, normalize
        from derivgrad.kernels.batchnorm import BatchNormCache

        N, C, H, W = x.shape
        x3 = np.ascontiguousarray(x).reshape(N, C, H * W)
        m = N * H * W
        mean_r, var_r = channel_moments(x3)
        s = np.concatenate([mean_r * m, [m]])
        self.dist.allreduce_sum(s)
        M = s[-1]
        mean = s[:C] / M
        q = m * (var_r + (mean_r - mean) ** 2)
        self.dist.allreduce_sum(q)
        var = q / M
        if M < 2:
            raise ValueError(
                "sync batch norm: training needs more than one value per channel in the "
                "global batch"
            )
        rm, rv, mom = self.buffers["running_mean"], self.buffers["running_var"], self.momentum
        rm *= 1 - mom
        rm += (mom * mean).astype(x.dtype)
        rv *= 1 - mom
        rv += (mom * var * (M / (M - 1))).astype(x.dtype)
        invstd = 1.0 / np.sqrt(var + self.eps)
        xhat, y = np.empty_like(x3), np.empty_like(x3)
        normalize(x3, mean, invstd, self.params["gamma"], self.params["beta"], xhat, y)
        self.cache = BatchNormCache(xhat.reshape(x.shape), invstd, self.params["gamma"], True)
        self.M, self.m = M, m
        return y.reshape(x.shape)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if not self.cache.training:
            return super().backward(dy)
        from derivgrad.kernels._batchnorm_kernels import grad_sums, input_grad

        N, C, H, W = dy.shape
        dy3 = np.ascontiguousarray(dy).reshape(N, C, H * W)
        xhat3 = self.cache.xhat.reshape(N, C, H * W)
        sdy, sdyx = grad_sums(dy3, xhat3)
        self.grads["gamma"], self.grads["beta"] = sdyx.astype(dy.dtype), sdy.astype(dy.dtype)
        tot = self.dist.allreduce_sum(np.concatenate([sdy, sdyx]))
        # input_grad divides by this shard's m; scale so that it divides by the global M
        scale = self.m / self.M
        dx = np.empty_like(dy3)
        input_grad(
            dy3,
            xhat3,
            self.cache.gamma,
            self.cache.invstd,
            tot[:C] * scale,
            tot[C:] * scale,
            True,
            dx,
        )
        return dx.reshape(dy.shape)


class _AgreedExit(SystemExit):
    """A non-root rank's exit after :meth:`Communicator.agree` found a user error: rank 0
    prints it; this rank leaves quietly with the same status."""

    all_ranks = True


@contextlib.contextmanager
def abort_on_error(dist: Communicator | None) -> Iterator[None]:
    """Around a multi-rank run: any exception on one rank is printed with the rank's name
    and ends *every* rank with ``MPI_Abort`` (the others may be waiting in a collective,
    and ``MPI_Finalize`` would wait for them too).  Single-rank runs are left alone."""
    if dist is None or dist.size == 1:
        yield
        return
    try:
        yield
    except SystemExit as e:
        if e.code in (0, None) or getattr(e, "all_ranks", False):
            raise
        dist.abort(e.code if isinstance(e.code, int) else 1)
    except BaseException as e:
        if getattr(e, "all_ranks", False):  # every rank raised it at the same point
            raise
        import signal

        from ..errors import DerivgradError

        # the launcher answers MPI_Abort with SIGTERM to every rank: die quietly from it
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        what = str(e) if isinstance(e, DerivgradError) else f"{type(e).__name__}: {e}"
        # one write per line: two ranks' lines never run together
        sys.stderr.write(f"derivgrad: rank {dist.rank} of {dist.size}: {what}\n")
        sys.stderr.flush()
        if not isinstance(e, DerivgradError | KeyboardInterrupt):
            import traceback

            traceback.print_exc()
        dist.abort(2 if isinstance(e, DerivgradError) else 1)
