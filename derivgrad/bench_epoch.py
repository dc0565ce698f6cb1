"""One LeNet training epoch (batch 64, SGD lr 0.01 momentum 0.9) with derivgrad's kernels
and with PyTorch on the CPU: same network, initialisation scheme, batch order and thread
count, each side in its own process (``python -m derivgrad.bench_epoch --side ours|torch``)
so that start-up, compile-cache loading and peak memory are its own.

:func:`epoch_sides` times both sides' processes from outside (``process_s``, the whole
process: interpreter start, imports, data, kernel loading, the epoch and the test pass) and
reads each side's own loop time (``epoch_s``) from its last output line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np


def side_ours(a: argparse.Namespace) -> list[dict[str, Any]]:
    from derivgrad.kernels import linear, set_threads

    set_threads(a.threads)
    if a.linear:
        linear.force_strategy(a.linear)
    from derivgrad.train import config, train

    m, _ = train(
        config(data=a.data, epochs=a.epochs, seed=a.seed, limit=a.limit),
        log=lambda s: None,
        progress=False,
    )
    return [
        dict(epoch=h["epoch"], seconds=h["seconds"], test_acc=h["test_acc"]) for h in m["history"]
    ]


def side_torch(a: argparse.Namespace) -> list[dict[str, Any]]:
    import torch
    import torch.nn as nn

    from derivgrad import data as mnist

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    d = mnist.load(a.data)
    prep = lambda im: torch.from_numpy(im.astype(np.float32)[:, None] / 255.0)
    xtr, ytr = prep(d["train_images"]), torch.from_numpy(d["train_labels"].astype(np.int64))
    if a.limit:
        xtr, ytr = xtr[: a.limit], ytr[: a.limit]
    xte, yte = prep(d["test_images"]), torch.from_numpy(d["test_labels"].astype(np.int64))
    net = nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2880, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    lossf = nn.CrossEntropyLoss()
    out = []
    for epoch in range(a.epochs):
        perm = np.random.default_rng([a.seed, epoch]).permutation(len(ytr))
        t0 = time.perf_counter()
        for b in range(len(ytr) // 64):
            idx = torch.from_numpy(perm[b * 64 : (b + 1) * 64])
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
        secs = time.perf_counter() - t0
        with torch.no_grad():
            acc = float((net(xte).argmax(1) == yte).float().mean())
        out.append(dict(epoch=epoch + 1, seconds=secs, test_acc=acc))
    return out


def run_side(
    side: str,
    threads: int,
    data: str | None = None,
    epochs: int = 1,
    limit: int | None = None,
    linear: str | None = None,
) -> dict[str, Any]:
    """Run one side in a fresh process; returns its result dict plus ``process_s``."""
    cmd = [sys.executable, "-m", "derivgrad.bench_epoch", "--side", side]
    cmd += ["--threads", str(threads), "--epochs", str(epochs)]
    if data:
        cmd += ["--data", str(data)]
    if limit:
        cmd += ["--limit", str(limit)]
    if linear:
        cmd += ["--linear", linear]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the {side} side of the epoch benchmark failed: {tail}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["process_s"] = wall
    res["epoch_s"] = res["rows"][-1]["seconds"]
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=["ours", "torch"], required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--data")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--linear", help="force a linear-layer strategy (comparisons)")
    a = ap.parse_args(argv)
    rows = side_ours(a) if a.side == "ours" else side_torch(a)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(rows=rows, peak_mb=peak)))


if __name__ == "__main__":
    main()
