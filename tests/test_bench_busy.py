"""``derivgrad bench --busy N`` (``derivgrad/bench/busy.py``): its neighbours end by
themselves, every column and case reaches the table, PyTorch's column is left out cleanly
where it is not installed, and bad options fail in one line.  No timing is asserted."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from derivgrad.bench import busy as B


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def test_neighbours_end_at_their_time_limit():
    procs = B.start_neighbours(2, limit_s=0.5)
    try:
        for p in procs:
            assert p.wait(timeout=60) == 0
    finally:
        B.stop_neighbours(procs)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to see the process gone")
def test_neighbours_end_when_the_benchmark_dies():
    # a parent killed outright (no finally, no atexit) still leaves no process spinning
    parent = textwrap.dedent(
        """
        import os
        from derivgrad.bench import busy as B
        procs = B.start_neighbours(2)
        print(" ".join(str(p.pid) for p in procs), flush=True)
        os._exit(0)
        """
    )
    r = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=120)
    pids = [int(p) for p in r.stdout.split()]
    assert len(pids) == 2, r.stderr
    try:
        for _ in range(300):  # each checks its parent every ~10 ms of spinning
            if not any(_alive(p) for p in pids):
                break
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def _measurement(torch):
    cols = [
        dict(label=label, threads=t, layer="omp", wait="passive", ms={"LeNet step": ms, "k": 1.0})
        for label, t, ms in (
            ("default", 2, 4.0),
            ("1 thread", 1, 5.0),
            ("2 threads", 2, 4.0),
            ("spinning", 2, 40.0),
        )
    ]
    if torch:
        cols.append(dict(label="PyTorch", threads=2, ms={"LeNet step": 8.0, "k": 2.0}))
    return dict(busy=2, cores=2, repeats=3, load_before=(1.0, 1.0, 1.0), blas="x", columns=cols)


@pytest.mark.parametrize("torch", [True, False])
def test_the_table_has_every_column_and_the_ratios(torch):
    lines = []
    B.print_table(_measurement(torch), lines.append)
    text = "\n".join(lines)
    row = next(line for line in lines if line.startswith("LeNet step"))
    cells = [c.strip() for c in row.split("|")[1:]]
    # default / 1 thread = 4 / 5; default / PyTorch = 4 / 8
    assert cells[:4] == ["4.00", "5.00", "4.00", "40.00"]
    if torch:
        assert cells[4:] == ["8.00", "0.80", "0.50"]
    else:
        assert cells[4:] == ["0.80"] and "PyTorch: not installed" in text


def test_without_torch_there_is_no_pytorch_column(monkeypatch):
    monkeypatch.setattr(B, "_torch_installed", lambda: False)
    labels = [c[0] for c in B.columns(2)]
    assert labels == [
        "default",
        "1 thread",
        "2 threads",
        "spinning",
    ]
    monkeypatch.setattr(B, "_torch_installed", lambda: True)
    assert [c[0] for c in B.columns(2)][-1] == "PyTorch"


def test_the_columns_set_what_they_say(monkeypatch):
    monkeypatch.setenv("DERIVGRAD_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    cols = {label: (side, threads, env) for label, side, threads, env in B.columns(2)}
    default = cols["default"]
    assert default[1] is None and "DERIVGRAD_THREADS" not in default[2]
    spin = cols["spinning"][2]
    assert spin["GOMP_SPINCOUNT"] == "300000" and "OMP_WAIT_POLICY" not in spin
    assert cols["1 thread"][1] == 1 and cols["2 threads"][1] == 2


def test_one_column_measures_every_case_in_this_process():
    from derivgrad import kernels as K

    before = K.get_threads()
    try:
        r = B.side("ours", 1, repeats=1)
    finally:
        K.set_threads(before)
    assert r["threads"] == 1 and r["wait"]
    assert list(r["ms"])[0].startswith("LeNet step") and len(r["ms"]) == 13
    assert all(ms > 0 for ms in r["ms"].values())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--busy", "-1"], "--busy must be >= 0"),
        (["--busy", "1", "--threads", "1"], "drop --threads"),
        (["--busy", "1", "--step"], "drop --step"),
        (["--busy", "1", "--limit", "64"], "drop --limit"),
    ],
)
def test_bad_busy_options_fail_in_one_line(args, message, capsys):
    from derivgrad.cli import main

    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
