"""Data-parallel LeNet training over MPI: epoch time, test accuracy, allreduce time per step
and the share of it hidden behind the backward pass, for P ranks × T threads layouts, with
PyTorch's DistributedDataParallel (gloo) side by side when PyTorch is installed.

    python benchmarks/bench_mpi.py [--layouts 1x2,2x1] [--data DIR] [--epochs 1] [--repeats 3]

A layout ``PxT`` runs P processes of T threads: ``1xT`` is the plain one-process run (no
MPI), ``PxT`` with P > 1 runs ``mpiexec -n P`` through :func:`derivgrad.training.train.train` with a
communicator, exactly as ``mpiexec -n P derivgrad train --threads T`` does.  Each P > 1
layout runs three ways: ``overlap`` (the default: the gradient buckets' reductions start
during the backward pass), ``blocking`` (one reduction after the backward) and ``shard``
(``--shard-optimizer``: reduce-scatter, each rank updates 1/P of the parameters,
all-gather).  PyTorch runs ``1xT`` plainly and ``PxT`` under DistributedDataParallel (gloo).

Columns: seconds per epoch (median of the alternated repeats, and the best one: on a
shared machine the best approximates the uncontended time), samples/s and the ratio to the
first layout (both from the median), test accuracy; for MPI runs ``allreduce ms`` is one blocking
``Allreduce`` of the whole gradient buffer (median of 20, measured after training),
``exposed ms`` the time per step spent waiting for the reductions after the backward, and
``hidden`` = 1 − exposed/allreduce (negative when waiting includes the other rank's
lateness).  Global batch 64, SGD lr 0.01 momentum 0.9, seed 0, as ``derivgrad train``.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"
BATCH = 64


def worker_ours(a):
    from derivgrad.kernels import set_threads

    set_threads(a.threads)  # Numba's pool and NumPy's BLAS, as --threads does
    from derivgrad.training.distributed import detect
    from derivgrad.training.train import config, train

    dist = detect() if a.procs > 1 else None
    if dist is not None:
        assert dist.size == a.procs, (dist.size, a.procs)
        dist.overlap = a.mode == "overlap"
        dist.shard_optimizer = a.mode == "shard"
    m, _ = train(
        config(
            data=a.data,
            epochs=a.epochs,
            seed=0,
            batch_size=BATCH,
            limit=a.limit,
        ),
        log=lambda s: None,
        progress=False,
        dist=dist,
    )
    out = dict(rows=[dict(seconds=h["seconds"], test_acc=h["test_acc"]) for h in m["history"]])
    if dist is not None:
        t = dist.timings
        out["exposed_ms"] = 1e3 * t["exposed_s"] / max(t["steps"], 1)
        out["allreduce_ms"] = 1e3 * dist.time_allreduce()
        out["bytes"] = int(dist._buf.nbytes)
        if not dist.is_root:
            return None
    return out


def worker_torch(a):
    import torch
    import torch.distributed as tdist
    import torch.nn as nn

    from derivgrad.training.bench_epoch import torch_lenet

    torch.set_num_threads(a.threads)
    rank, size = int(os.environ.get("PMI_RANK", 0)), int(os.environ.get("PMI_SIZE", 1))
    assert size == a.procs
    if size > 1:
        tdist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=rank, world_size=size
        )
    torch.manual_seed(0)
    net, (xtr, ytr, xte, yte) = torch_lenet(a.data, a.limit)
    model = nn.parallel.DistributedDataParallel(net) if size > 1 else net
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    lossf = nn.CrossEntropyLoss()
    rows = []
    shard = BATCH // size
    for epoch in range(a.epochs):
        perm = np.random.default_rng([0, epoch]).permutation(len(ytr))
        if size > 1:
            tdist.barrier()
        t0 = time.perf_counter()
        for b in range(len(ytr) // BATCH):
            idx = perm[b * BATCH : (b + 1) * BATCH][rank * shard : (rank + 1) * shard]
            idx = torch.from_numpy(idx)
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
        secs = time.perf_counter() - t0
        with torch.no_grad():
            acc = float((net(xte).argmax(1) == yte).float().mean())
        rows.append(dict(seconds=secs, test_acc=acc))
    if size > 1:
        tdist.destroy_process_group()
    return dict(rows=rows) if rank == 0 else None


def run_layout(a, side, procs, threads, mode):
    args = [
        sys.executable,
        __file__,
        "--worker",
        side,
        "--procs",
        str(procs),
        "--threads",
        str(threads),
        "--epochs",
        str(a.epochs),
    ]
    args += ["--data", a.data] if a.data else []
    args += ["--limit", str(a.limit)] if a.limit else []
    args += ["--mode", mode]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MPIEXEC_TIMEOUT="1800")
    if procs > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = [a.mpiexec, "-n", str(procs), *args, "--port", str(port)]
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    if p.returncode:
        sys.exit(f"{side} {procs}x{threads} failed:\n{p.stdout}\n{p.stderr}")
    lines = [x for x in p.stdout.strip().splitlines() if x.startswith("{")]
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layouts", default="1x2,2x1", help="comma-separated PxT")
    ap.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None)
    ap.add_argument("--limit", type=int, help="first N training images only")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--procs", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="overlap", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        out = worker_ours(a) if a.worker == "ours" else worker_torch(a)
        if out is not None:
            print(json.dumps(out), flush=True)
        return
    a.mpiexec = shutil.which(
        "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    layouts = [tuple(int(v) for v in s.split("x")) for s in a.layouts.split(",")]
    if any(p > 1 for p, _ in layouts) and a.mpiexec is None:
        sys.exit("no mpiexec: pip install 'derivgrad[mpi]'")
    runs = []
    for p, t in layouts:
        for mode in ("overlap", "blocking", "shard") if p > 1 else ("-",):
            runs.append(("derivgrad", p, t, mode))
    try:
        import torch  # noqa: F401

        if not a.no_torch:
            runs += [("pytorch", p, t, "ddp" if p > 1 else "-") for p, t in layouts]
    except ImportError:
        print("PyTorch not installed: derivgrad only")
    results = {r: [] for r in runs}
    for _ in range(a.repeats):  # alternate, so that a drifting machine favours no layout
        for r in runs:
            side, p, t, mode = r
            results[r].append(run_layout(a, "ours" if side == "derivgrad" else "torch", p, t, mode))
    n = (a.limit or (60000 if a.data else 10000)) // BATCH * BATCH
    print(
        f"LeNet, global batch {BATCH}, SGD lr 0.01 momentum 0.9, data "
        f"{a.data or 'embedded subset'}{f' (first {a.limit})' if a.limit else ''}, "
        f"{a.epochs} epoch(s), median over epochs of {a.repeats} alternated repeat(s)"
    )
    print(
        f"{'side':10s} {'PxT':>4s} {'mode':>8s} {'epoch s':>8s} {'best s':>7s} {'samples/s':>9s} "
        f"{'acc %':>6s} {'ratio':>6s} {'allreduce ms':>12s} {'exposed ms':>10s} {'hidden':>6s}"
    )
    base = None
    for r in runs:
        side, p, t, mode = r
        rs = results[r]
        secs = float(np.median([row["seconds"] for x in rs for row in x["rows"]]))
        best = float(np.min([row["seconds"] for x in rs for row in x["rows"]]))
        accs = sorted({round(100 * row["test_acc"], 2) for x in rs for row in x["rows"][-1:]})
        base = base or secs
        comm = ""
        if "allreduce_ms" in rs[0]:
            ar = float(np.median([x["allreduce_ms"] for x in rs]))
            ex = float(np.median([x["exposed_ms"] for x in rs]))
            comm = f"{ar:12.2f} {ex:10.2f} {1 - ex / ar:6.0%}"
        print(
            f"{side:10s} {p}x{t:<2d} {mode:>8s} {secs:8.2f} {best:7.2f} "
            f"{n / secs:9.0f} {'/'.join(map(str, accs)):>6s} {secs / base:6.2f} {comm}"
        )
    sizes = [x.get("bytes") for rs in results.values() for x in rs if x.get("bytes")]
    if sizes:
        ar = [
            float(np.median([x["allreduce_ms"] for x in rs]))
            for rs in results.values()
            if "allreduce_ms" in rs[0]
        ]
        print(
            f"gradient buffer {sizes[0] / 1e6:.2f} MB; allreduce bus bandwidth "
            f"{sizes[0] / (min(ar) / 1e3) / 1e9:.2f} GB/s (buffer bytes / allreduce time)"
        )


if __name__ == "__main__":
    main()
