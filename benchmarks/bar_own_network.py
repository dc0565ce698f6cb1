"""Issue 27's accuracy bar for a network of one's own, run through the command line: the
README's example network (``examples/networks.py:model``) trained on the first 12,800
images of full MNIST for 2 epochs, under 1 and 2 MPI ranks; for each rank count one run
straight through and one stopped by SIGTERM in the middle of epoch 2 and resumed with
``--resume``.  Prints each run's test accuracy per epoch and whether the resumed run's final
checkpoint (parameters, batch-norm statistics, optimizer state, history) is bit for bit the
uninterrupted run's.

    python benchmarks/bar_own_network.py --data DIR/mnist [--ranks 1 2] [--delay 20]
        -- --optimizer adam --lr 0.002 --batch-size 32 --normalize --schedule cosine

Options after ``--`` go to ``derivgrad train`` unchanged.  One rank runs as a plain process;
more ranks under the ``mpiexec`` beside the interpreter (the mpich wheel's) or on PATH.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NET = str(ROOT / "examples" / "networks.py")


def _read(path):
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        return {k: z[k] for k in z.files if k.startswith("a/")}, meta


def _command(ranks, args, ckpt):
    cmd = [sys.executable, "-m", "derivgrad", "train", "--model", NET, *args]
    cmd += ["--checkpoint", ckpt, "--quiet"]
    if ranks == 1:
        return cmd
    mpiexec = shutil.which(
        "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if mpiexec is None:
        sys.exit("no mpiexec: pip install 'derivgrad[mpi]'")
    return [mpiexec, "-n", str(ranks), *cmd]


def _run(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r.stderr


def _interrupted(cmd, ckpt, delay, env):
    """Run ``cmd``; SIGTERM it ``delay`` s after its first checkpoint (end of epoch 1)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    while not os.path.exists(ckpt):
        if p.poll() is not None:
            sys.exit(f"ended before its first checkpoint:\n{p.stderr.read()}")
        time.sleep(0.5)
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate()
    if p.returncode not in (0, 130, 143):
        sys.exit(f"interrupted run failed ({p.returncode}):\n{err}")
    return _read(ckpt)[1]


def _untimed(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "samples_per_s")} for h in history]


def _accuracies(meta):
    return " ".join(f"{100 * h['test_acc']:.2f}%" for h in meta["history"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--delay", type=float, default=20.0, help="seconds into epoch 2")
    ap.add_argument("train", nargs="*", help="options of derivgrad train (after --)")
    a = ap.parse_args()
    base = ["--data", a.data, "--limit", "12800", "--epochs", "2", "--threads", "1", *a.train]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    print(f"derivgrad train --model {NET} {' '.join(base)}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for P in a.ranks:
            straight, cut = f"{tmp}/straight{P}.npz", f"{tmp}/cut{P}.npz"
            _run(_command(P, base, straight), env)
            arrays, meta = _read(straight)
            stop = _interrupted(_command(P, base, cut), cut, a.delay, env)
            where = f"epoch {stop['epoch'] + 1} after {stop['batch']} batches"
            if not (stop["epoch"] == 1 and stop["batch"] > 0):
                print(f"{P} rank(s): the signal landed at {where}, not inside epoch 2")
                ok = False
            _run(_command(P, [*base, "--resume"], cut), env)
            arrays2, meta2 = _read(cut)
            same = (
                sorted(arrays) == sorted(arrays2)
                and all(np.array_equal(arrays[k], arrays2[k]) for k in arrays)
                and _untimed(meta["history"]) == _untimed(meta2["history"])
            )
            ok = ok and same and meta["history"][-1]["test_acc"] >= 0.96
            print(
                f"{P} rank(s): test accuracy by epoch {_accuracies(meta)}; stopped at {where}, "
                f"resumed: {_accuracies(meta2)}; final checkpoint bit for bit the same: "
                f"{'yes' if same else 'NO'}"
            )
    print("bar met" if ok else "bar NOT met")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
