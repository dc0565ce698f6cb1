"""One LeNet training epoch (batch 64, SGD lr 0.01 momentum 0.9) with derivgrad's kernels
and with PyTorch on the CPU: same network, initialisation scheme, batch order and thread
count, each side in its own process (``python -m derivgrad.training.bench_epoch --side ours|torch``)
so that start-up, compile-cache loading and peak memory are its own.

:func:`run_side` times a side's process from outside (``process_s``, the whole
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


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: ``VmHWM``, which belongs to the memory
    map that exec replaced, where Linux has it.  ``ru_maxrss`` carries the forked parent's
    peak across exec, so a side launched from a 1 GB parent read at least 1 GB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def side_ours(a: argparse.Namespace) -> list[dict[str, Any]]:
    from derivgrad.kernels import linear, set_threads

    set_threads(a.threads)
    if a.linear:
        linear.force_strategy(a.linear)
    from derivgrad.training.train import config, train

    m, _ = train(
        config(data=a.data, epochs=a.epochs, seed=a.seed, limit=a.limit),
        log=lambda s: None,
        progress=False,
    )
    return [
        dict(epoch=h["epoch"], seconds=h["seconds"], test_acc=h["test_acc"]) for h in m["history"]
    ]


def torch_lenet(
    data: str | None, limit: int | None = None, normalize: bool = False
) -> tuple[Any, tuple[Any, Any, Any, Any]]:
    """PyTorch's side of every comparison: the course LeNet (``torch.nn``, PyTorch's default
    initialisation, seeded by the caller) and MNIST as tensors scaled as derivgrad scales
    them (÷255, then MNIST's mean and std with ``normalize``).  Returns
    ``(net, (x_train, y_train, x_test, y_test))``; ``limit`` keeps the first training images."""
    import torch
    import torch.nn as nn

    from derivgrad.training import data as mnist

    d = mnist.load(data)
    # derivgrad's own preparation, so both sides pay the same for it (one array, in place)
    prep = lambda im: torch.from_numpy(mnist.prepare(im, normalize))
    labels = lambda y: torch.from_numpy(y.astype(np.int64))
    xtr, ytr = prep(d["train_images"]), labels(d["train_labels"])
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
    xte, yte = prep(d["test_images"]), labels(d["test_labels"])
    net = nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2880, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )
    return net, (xtr, ytr, xte, yte)


def torch_epochs(
    net: Any,
    opt: Any,
    tensors: tuple[Any, Any, Any, Any],
    epochs: int,
    seed: int,
    sched: Any = None,
) -> list[dict[str, Any]]:
    """Train ``net`` in batches of 64 in derivgrad's batch order (a permutation seeded by
    ``[seed, epoch]``); per epoch the loop's seconds and the test accuracy."""
    import torch

    xtr, ytr, xte, yte = tensors
    lossf = torch.nn.CrossEntropyLoss()
    out = []
    for epoch in range(epochs):
        perm = np.random.default_rng([seed, epoch]).permutation(len(ytr))
        t0 = time.perf_counter()
        for b in range(len(ytr) // 64):
            idx = torch.from_numpy(perm[b * 64 : (b + 1) * 64])
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        secs = time.perf_counter() - t0
        with torch.no_grad():
            acc = float((net(xte).argmax(1) == yte).float().mean())
        out.append(dict(epoch=epoch + 1, seconds=secs, test_acc=acc))
    return out


def side_torch(a: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    net, tensors = torch_lenet(a.data, a.limit)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    return torch_epochs(net, opt, tensors, a.epochs, a.seed)


def run_side(
    side: str,
    threads: int,
    data: str | None = None,
    epochs: int = 1,
    limit: int | None = None,
    linear: str | None = None,
) -> dict[str, Any]:
    """Run one side in a fresh process; returns its result dict plus ``process_s``."""
    cmd = [sys.executable, "-m", "derivgrad.training.bench_epoch", "--side", side]
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
    print(json.dumps(dict(rows=rows, peak_mb=peak_rss_mb())))


if __name__ == "__main__":
    main()
