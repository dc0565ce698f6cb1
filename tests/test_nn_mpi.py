"""A network of one's own trained over MPI: two ranks with synchronised batch norm (nested
in a residual block) train the network one process trains, to float32 rounding, with the
optimizer replicated or sharded (--shard-optimizer)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import derivgrad.training.train as T

MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and an mpiexec: pip install '.[mpi]'",
)
U = 2.0**-24
STEPS = 8  # 256 images / 32 a batch, one epoch

NET = """
import derivgrad
from derivgrad import nn

depthwise = derivgrad.define("y[n, c, i, j] += x[n, c, i + u, j + v] * w[c, u, v]",
                             x=(2, 4, 6, 6), w=(4, 3, 3))


def model():
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.BatchNorm2d(3), nn.Pad2d(1),
                                  nn.Defined(depthwise, w=(3, 3, 3)))),
        nn.MaxPool2d(4), nn.Flatten(), nn.Linear(3 * 7 * 7, 10))
"""


def _read(path):
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        return {k[2:]: z[k] for k in z.files if k.startswith("a/")}, meta


@pytest.mark.parametrize("shard", [False, True])
def test_two_ranks_train_the_network_one_process_trains(tmp_path, shard):
    net = tmp_path / "net.py"
    net.write_text(NET)
    args = ["--model", str(net), "--limit", "256", "--batch-size", "32", "--epochs", "1"]
    args += ["--shard-optimizer"] if shard else []
    env = dict(os.environ, MPIEXEC_TIMEOUT="300", PYTHONUNBUFFERED="1")
    r = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-m", "derivgrad", "train", *args, "--quiet",
         "--checkpoint", str(tmp_path / "p2.npz")],
        capture_output=True, text=True, env=env, timeout=330,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "MPI: 2 ranks" in r.stderr
    T.train(
        T.config(model=str(net), limit=256, batch_size=32, epochs=1,
                 checkpoint=str(tmp_path / "p1.npz")),
        log=lambda s: None, progress=False,
    )  # fmt: skip
    p2, m2 = _read(tmp_path / "p2.npz")
    p1, m1 = _read(tmp_path / "p1.npz")
    assert m1["steps"] == m2["steps"] == STEPS and sorted(p1) == sorted(p2)
    assert m1["config"]["architecture"] == m2["config"]["architecture"]
    for k in p1:
        if k.startswith(("p.", "b.")):  # parameters and batch norm's running statistics
            tol = 4 * STEPS * U * float(np.abs(p1[k]).max()) + 1e-7
            assert float(np.abs(p1[k] - p2[k]).max()) <= tol, k


def test_a_network_refused_when_built_is_one_line_under_two_ranks(tmp_path):
    # the memory guard (or a shape error) raises on every rank alike: one verdict, rank 0's
    net = tmp_path / "big.py"
    net.write_text(
        "from derivgrad import nn\n\n\ndef model():\n"
        "    return nn.Sequential(nn.Conv2d(1, 512, 3, padding=1), nn.Flatten(),"
        " nn.Linear(512 * 28 * 28, 10))\n"
    )
    env = dict(os.environ, MPIEXEC_TIMEOUT="300", PYTHONUNBUFFERED="1")
    r = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-m", "derivgrad", "train", "--model", str(net),
         "--limit", "64", "--quiet"],
        capture_output=True, text=True, env=env, timeout=330,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower() or "abort" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith("derivgrad train: error: layer 0 (Conv2d")
    assert "GiB limit" in errors[0] and "Traceback" not in r.stderr
