"""Data-parallel training over MPI: ``mpiexec -n 2`` runs launched from plain pytest.

Every launch has ``MPIEXEC_TIMEOUT`` (Hydra ends the job after it) and a subprocess timeout
above that, so a hang fails the test instead of blocking CI.  Those tests skip when mpi4py or
an ``mpiexec`` is missing (``pip install '.[mpi]'`` provides both).

Tolerance of "the same answer as one process": with P = 2 each gradient entry is the sum of
two half-batch float32 sums instead of one sum over the batch, so it differs from P = 1 by
a few units of float32 rounding (u = 2⁻²⁴ of its magnitude); SGD with momentum carries that
into the parameters, and over k steps the differences add up to at most about k·u·max|p|
per layer.  We allow 4·k·u·max|p|; a wrong shard, a missing average or unsynchronised
batch norm moves parameters by 1e-4 or more after a few steps.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import derivgrad.training.train as T

MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)
# the tests that launch ranks; the others (detection, threads, dead peers) need no MPI
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and an mpiexec: pip install '.[mpi]'",
)
DERIVGRAD = [sys.executable, "-m", "derivgrad"]
U = 2.0**-24
SMALL = ["--filters", "4", "--hidden", "32", "--limit", "320", "--batch-size", "32", "--quiet"]
K_STEPS = 10  # 320 images / 32 a batch, one epoch
# bound on one launch: generous, since a fresh install compiles the kernels in every rank
# first (tens of seconds on a loaded machine); a hang still fails instead of blocking CI
LIMIT_S = 300


def launch(n, args, timeout=LIMIT_S, env_extra=None, extra_mpiexec=()):
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(timeout), PYTHONUNBUFFERED="1")
    env.update(env_extra or {})
    return subprocess.run(
        [MPIEXEC, *extra_mpiexec, "-n", str(n), *DERIVGRAD, "train", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout + 30,
    )


def read_ckpt(path):
    """``(arrays, meta)`` of a checkpoint file, read directly (no expectations)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        return {k[2:]: z[k] for k in z.files if k.startswith("a/")}, meta


def train_one_process(tmp_path, name, **cfg):
    path = str(tmp_path / name)
    base = dict(filters=4, hidden=32, limit=320, batch_size=32, checkpoint=path)
    T.train(T.config(**(base | cfg)), log=lambda s: None, progress=False)
    return read_ckpt(path)


def assert_close_to_float32_rounding(a, b, steps):
    for k in a:
        if not k.startswith("p."):
            continue
        tol = 4 * steps * U * float(np.abs(a[k]).max())
        err = float(np.abs(a[k] - b[k]).max())
        assert err <= tol, f"{k}: max difference {err:.3g} > {tol:.3g}"


@needs_mpi
@pytest.mark.parametrize(
    "batchnorm, shard", [(False, False), (True, False), (True, True)], ids=["", "bn", "bn-shard"]
)
def test_two_ranks_train_the_same_model_as_one_process(tmp_path, batchnorm, shard):
    opts = (["--batchnorm"] if batchnorm else []) + (["--shard-optimizer"] if shard else [])
    r = launch(2, [*SMALL, *opts, "--epochs", "1", "--checkpoint", str(tmp_path / "p2.npz")])
    assert r.returncode == 0, r.stderr
    assert "MPI: 2 ranks on 1 node(s)" in r.stderr  # the world size we launched
    assert r.stdout.count("{") == 1  # rank 0 alone prints the metrics
    p2, meta2 = read_ckpt(tmp_path / "p2.npz")
    p1, meta1 = train_one_process(tmp_path, "p1.npz", epochs=1, batchnorm=batchnorm)
    assert meta2["steps"] == meta1["steps"] == K_STEPS
    assert sorted(p2) == sorted(p1)  # the same checkpoint format, sharded optimizer or not
    assert_close_to_float32_rounding(p1, p2, K_STEPS)
    if batchnorm:  # the running statistics are those of the whole batch, too
        for k in ("b.1.running_mean", "b.1.running_var"):
            np.testing.assert_allclose(p2[k], p1[k], rtol=4 * K_STEPS * U, atol=1e-7)
    h1, h2 = meta1["history"][0], meta2["history"][0]
    assert h2["test_acc"] == h1["test_acc"]
    assert abs(h2["train_loss"] - h1["train_loss"]) < 1e-6


@needs_mpi
def test_one_rank_under_mpiexec_is_bitwise_the_plain_run(tmp_path, monkeypatch):
    # a world of one: every reduction is the identity, so nothing may change
    r = launch(1, [*SMALL, "--epochs", "1", "--checkpoint", str(tmp_path / "m.npz")])
    assert r.returncode == 0, r.stderr
    assert "MPI: 1 ranks" in r.stderr
    a, _ = read_ckpt(tmp_path / "m.npz")
    # the launched process cuts small work as a user's does (one thread below the
    # thresholds, which the suite otherwise lowers to 0): the plain run must cut it alike
    from derivgrad.kernels import _threads

    monkeypatch.setitem(_threads.serial_below, "bytes", _threads.SMALL_BYTES)
    monkeypatch.setitem(_threads.serial_below, "flops", _threads.SMALL_FLOPS)
    b, _ = train_one_process(tmp_path, "p.npz", epochs=1)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


@needs_mpi
def test_resume_across_rank_counts(tmp_path):
    # epoch 1 with 2 ranks, epoch 2 with 1 process, against 2 epochs in one process; and
    # epoch 1 in one process, epoch 2 with 2 ranks and the optimizer sharded over them
    path = str(tmp_path / "c.npz")
    r = launch(2, [*SMALL, "--epochs", "1", "--checkpoint", path])
    assert r.returncode == 0, r.stderr
    base = dict(filters=4, hidden=32, limit=320, batch_size=32)
    T.train(
        T.config(epochs=2, checkpoint=path, resume=True, **base), log=lambda s: None, progress=False
    )
    resumed, meta = read_ckpt(path)
    full, _ = train_one_process(tmp_path, "full.npz", epochs=2)
    assert meta["epoch"] == 2 and len(meta["history"]) == 2
    assert_close_to_float32_rounding(full, resumed, 2 * K_STEPS)

    path1 = str(tmp_path / "d.npz")
    T.train(T.config(epochs=1, checkpoint=path1, **base), log=lambda s: None, progress=False)
    r = launch(2, [*SMALL, "--epochs", "2", "--checkpoint", path1, "--resume", "--shard-optimizer"])
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr
    resumed2, meta2 = read_ckpt(path1)
    assert meta2["epoch"] == 2
    assert_close_to_float32_rounding(full, resumed2, 2 * K_STEPS)


@needs_mpi
def test_synchronised_batchnorm_equals_batchnorm_of_the_whole_batch(tmp_path):
    script = tmp_path / "syncbn.py"
    script.write_text(
        """
import sys, numpy as np
from derivgrad import kernels as K
from derivgrad.training.distributed import SyncBatchNorm2d, detect
from derivgrad.training.model import BatchNorm2d
d = detect(force=True)
assert d.size == 2
rng = np.random.default_rng(0)
x = (rng.standard_normal((8, 3, 5, 5)) * 2 + 1).astype(np.float32)
dy = rng.standard_normal((8, 3, 5, 5)).astype(np.float32)
whole = BatchNorm2d(3, np.float32)
whole.params["gamma"][:] = [0.5, 1.5, 2.0]
y = whole.forward(x, True)
dx = whole.backward(dy)
sync = SyncBatchNorm2d(BatchNorm2d(3, np.float32), d)
sync.params["gamma"][:] = [0.5, 1.5, 2.0]
s = slice(4 * d.rank, 4 * d.rank + 4)
ys = sync.forward(x[s], True)
dxs = sync.backward(dy[s])
# dgamma, dbeta: each rank's sums over its shard; summed over ranks, the whole batch's
g = np.concatenate([sync.grads["gamma"], sync.grads["beta"]]).astype(np.float64)
d.allreduce_sum(g)
tol = dict(rtol=1e-5, atol=1e-6)
np.testing.assert_allclose(ys, y[s], **tol)
np.testing.assert_allclose(dxs, dx[s], **tol)
np.testing.assert_allclose(g[:3], whole.grads["gamma"], **tol)
np.testing.assert_allclose(g[3:], whole.grads["beta"], **tol)
for k in ("running_mean", "running_var"):
    np.testing.assert_allclose(sync.buffers[k], whole.buffers[k], **tol)
print("ok", d.rank)
"""
    )
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(LIMIT_S))
    r = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=LIMIT_S + 30,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("ok") == 2  # both ranks got there (their lines may interleave)


@needs_mpi
def test_bad_launches_get_clear_errors(tmp_path):
    r = launch(2, [*SMALL, "--epochs", "1", "--batch-size", "33"])
    assert r.returncode != 0
    assert "--batch-size 33 (the global batch) is not divisible by the 2 MPI ranks" in r.stderr
    assert "32 or 34" in r.stderr
    r = launch(2, [*SMALL, "--epochs", "1", "--batch-size", "1"])
    assert r.returncode != 0
    assert "--batch-size 1 is smaller than the 2 MPI ranks" in r.stderr
    assert "Traceback" not in r.stderr
    # a launcher that says 2 processes, an MPI world of 1 (another MPI's mpiexec): refused
    env = dict(os.environ, PMI_SIZE="2", PMI_RANK="1")
    for k in ("PMI_FD", "PMI_PORT", "PMI_ID", "PMI_HOSTNAME"):
        env.pop(k, None)
    r = subprocess.run(
        [*DERIVGRAD, "train", *SMALL, "--epochs", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "started 2 processes but mpi4py's MPI" in r.stderr
    assert "sees a world of 1" in r.stderr


def test_without_a_launcher_mpi4py_is_not_imported():
    code = (
        "import sys; from derivgrad.training.distributed import detect; "
        "assert detect() is None; assert 'mpi4py' not in sys.modules; print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "SLURM"))}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def _pid_of_rank(parent_pid, rank):
    """The pid of the process with PMI_RANK=rank below ``parent_pid`` (Linux /proc)."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = (p / "environ").read_bytes().split(b"\0")
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if f"PMI_RANK={rank}".encode() in env and b"derivgrad" in cmd:
            q = int(p.name)
            while q > 1:  # is it one of ours?
                if q == parent_pid:
                    return int(p.name)
                stat = Path(f"/proc/{q}/stat").read_text()
                q = int(stat.rsplit(")", 1)[1].split()[1])
    return None


def _train_until_a_checkpoint(args: list[str], path: Path) -> subprocess.Popen:
    """``mpiexec -n 2 derivgrad train ARGS --epochs 1000 --checkpoint PATH`` started, and
    returned once its first checkpoint exists (the process is killed if none appears)."""
    env = dict(os.environ, MPIEXEC_TIMEOUT=str(LIMIT_S), PYTHONUNBUFFERED="1")
    cmd = [MPIEXEC, "-n", "2", *DERIVGRAD, "train", *args, "--epochs", "1000"]
    proc = subprocess.Popen(
        [*cmd, "--checkpoint", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + LIMIT_S
    while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not path.exists():
        proc.kill()
        proc.communicate()
    assert path.exists(), "no checkpoint written"
    return proc


@needs_mpi
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_killed_rank_ends_the_job_and_the_checkpoint_survives(tmp_path):
    path = tmp_path / "k.npz"
    proc = _train_until_a_checkpoint(SMALL, path)
    try:
        victim = _pid_of_rank(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        try:  # the bound: a job that outlives its dead rank this long is hanging
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the job still runs 30 s after rank 1 was killed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    # the launcher names the dead pid; the run's first line maps pids to ranks
    assert f"1:{victim}" in err
    assert str(victim) in out + err
    arrays, meta = read_ckpt(path)  # intact
    r = launch(
        2, [*SMALL, "--epochs", str(meta["epoch"] + 1), "--checkpoint", str(path), "--resume"]
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["epochs"] == meta["epoch"] + 1


@needs_mpi
def test_a_signal_stops_every_rank_at_the_same_step_and_resume_continues(tmp_path):
    # SIGTERM to mpiexec reaches every rank; they agree on the step to stop at, rank 0
    # checkpoints there, all exit 130; one process then continues as if never stopped
    path = tmp_path / "s.npz"
    small = [*SMALL[:4], "--limit", "640", *SMALL[6:]]  # 640 images: 20 steps an epoch
    proc = _train_until_a_checkpoint(small, path)
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted (SIGTERM)" in err
    arrays, meta = read_ckpt(path)
    epochs = meta["epoch"] + 1
    base = dict(filters=4, hidden=32, limit=640, batch_size=32)
    T.train(
        T.config(epochs=epochs, checkpoint=str(path), resume=True, **base),
        log=lambda s: None,
        progress=False,
    )
    resumed, meta2 = read_ckpt(path)
    full, _ = train_one_process(tmp_path, "full.npz", epochs=epochs, limit=640)
    assert meta2["steps"] == epochs * 20
    assert_close_to_float32_rounding(full, resumed, epochs * 20)


# ---- pieces that need no launcher -------------------------------------------------------


def test_launcher_detection_from_the_environment():
    from derivgrad.training.distributed import launched_size

    assert launched_size({}) is None
    assert launched_size({"PMI_SIZE": "4", "PMI_RANK": "2"}) == 4
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    assert launched_size({"SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "8"}) == 8
    # a batch script's own step (Slurm's special ids) is not an MPI launch
    assert launched_size({"SLURM_STEP_ID": "4294967291", "SLURM_STEP_NUM_TASKS": "1"}) is None


def _fake_communicator(**attrs):
    from derivgrad.training.distributed import Communicator

    c = object.__new__(Communicator)  # no MPI: only the attributes the method reads
    c.__dict__.update(attrs)
    return c


def test_default_threads_share_the_node_and_respect_binding():
    shared = [list(range(16))] * 4
    c = _fake_communicator(_local_affinities=shared, local_rank=1, local_size=4)
    assert c.default_threads() == 4  # 16 cores, 4 ranks on the node
    c = _fake_communicator(_local_affinities=[list(range(16))] * 32, local_rank=0, local_size=32)
    assert c.default_threads() == 1  # never fewer than one
    bound = [[0, 1, 2], [3, 4, 5]]  # the launcher gave each rank its own cores
    c = _fake_communicator(_local_affinities=bound, local_rank=1, local_size=2)
    assert c.default_threads() == 3


def test_a_dead_rank_on_this_node_is_named():
    from derivgrad.errors import DistributedError

    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # exited and reaped: its pid is gone
    host = "here"
    c = _fake_communicator(
        rank=0, host=host, peers=[(0, os.getpid(), host), (1, done.pid, host), (2, 1, "other")]
    )
    with pytest.raises(DistributedError, match=rf"rank 1 \(pid {done.pid} on here\) died"):
        c._check_peers()
    alive = _fake_communicator(rank=0, host=host, peers=[(0, os.getpid(), host)])
    alive._check_peers()  # itself: no complaint
