"""MPI start-up (issue 31, item 6): every setting that changes the numbers is compared across
ranks before anything is trained, and a user error is printed once, by rank 0, on its own
line.  The verdict logic runs here on simulated ranks (every setting, fast); two real
``mpiexec`` launches (MPMD: each rank its own options) show the command line's behaviour."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import derivgrad.training.train as T
from derivgrad.errors import DataError, UsageError
from derivgrad.training.config import TrainConfig
from derivgrad.training.distributed import Communicator, _AgreedExit


class _World:
    """P simulated ranks: each ``allgather`` returns what every rank contributes, taken
    from ``per_rank`` (the value rank r would pass)."""

    def __init__(self, per_rank):
        self.per_rank = per_rank

    def allgather(self, _mine):
        return self.per_rank.pop(0)


def _rank(rank, size, gathered):
    c = object.__new__(Communicator)
    c.comm, c.rank, c.size = _World(gathered), rank, size
    c.shard_optimizer = False
    return c


# a different but valid value for every field (what another rank may have been given)
OTHER = dict(
    epochs=4, batch_size=32, lr=0.02, momentum=0.5, optimizer="adam", weight_decay=0.1,
    seed=3, resume=True, filters=8, kernel=3, hidden=40, batchnorm=True, normalize=True,
    schedule="cosine", limit=320, model="net.py",
)  # fmt: skip


def test_every_setting_that_changes_the_numbers_is_compared():
    base = TrainConfig(checkpoint="c.npz")
    mine = T.rank_settings(base, None)
    names = {f.name for f in dataclasses.fields(TrainConfig)} - set(T._RANK_LOCAL)
    assert set(OTHER) == names  # a new setting must be added here, and so get compared
    for field, value in OTHER.items():
        theirs = T.rank_settings(dataclasses.replace(base, **{field: value}), None)
        option = "--" + field.replace("_", "-")
        with pytest.raises(UsageError, match=f"different {option}: rank 0 has .* rank 1 has"):
            _rank(0, 2, [[mine, theirs]]).check_settings(mine)
    _rank(0, 2, [[mine, dict(mine)]]).check_settings(mine)  # the same: no error


def test_a_user_error_is_raised_by_rank_0_alone():
    def fail():
        raise DataError("nowhere: no such file or directory")

    verdict = [None, ("DataError", "nowhere: no such file or directory")]
    # rank 1 failed, rank 0 did not: rank 0 raises it, naming rank 1
    with pytest.raises(DataError, match=r"^rank 1 of 2: nowhere") as e:
        _rank(0, 2, [list(verdict)]).agree(lambda: None)
    assert e.value.all_ranks
    with pytest.raises(_AgreedExit) as ex:
        _rank(1, 2, [list(verdict)]).agree(fail)
    assert ex.value.code == 2 and ex.value.all_ranks
    # every rank failed alike: one plain message
    both = [("DataError", "nowhere: no such file or directory")] * 2
    with pytest.raises(DataError, match=r"^nowhere: no such"):
        _rank(0, 2, [list(both)]).agree(fail)


MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and an mpiexec: pip install '.[mpi]'",
)
SMALL = ["--filters", "4", "--hidden", "16", "--limit", "64", "--batch-size", "32", "--quiet"]


def _mpmd(rank0, rank1):
    train = [sys.executable, "-m", "derivgrad", "train", *SMALL, "--epochs", "1"]
    env = dict(os.environ, MPIEXEC_TIMEOUT="240", PYTHONUNBUFFERED="1")
    cmd = [MPIEXEC, "-n", "1", *train, *rank0, ":", "-n", "1", *train, *rank1]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=270)


@needs_mpi
def test_ranks_launched_with_different_settings_stop_before_training(tmp_path):
    r = _mpmd([], ["--normalize"])
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert errors == [
        "derivgrad train: error: the MPI ranks were given different --normalize: rank 0 has "
        "False, rank 1 has True; launch every rank with the same settings"
    ], r.stderr
    assert "epoch" not in r.stderr and "Traceback" not in r.stderr


@needs_mpi
def test_a_user_error_of_every_rank_is_printed_once_on_its_own_line(tmp_path):
    r = _mpmd(["--data", str(tmp_path / "nowhere")], ["--data", str(tmp_path / "nowhere")])
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if "nowhere" in line]
    assert lines == [f"derivgrad train: error: {tmp_path / 'nowhere'}: no such file or directory"]
