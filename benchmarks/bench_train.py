"""One LeNet training epoch (60,000 images, batch 64, SGD lr 0.01 momentum 0.9) with
derivgrad's kernels and with PyTorch on the CPU, same network, initialisation scheme, batch
order and thread count; each side in its own process so that peak memory is its own.

    python benchmarks/bench_train.py [--data DIR] [--epochs 1] [--threads 2] [--repeats 3]

``--repeats R`` alternates the two sides' processes R times (ours, PyTorch, ours, ...) and
reports the median time per epoch, which keeps a drifting machine from favouring either.

Prints per epoch: seconds, samples/s, test accuracy, and the time ratio derivgrad/PyTorch,
plus each process's peak RSS.  Without PyTorch installed, only derivgrad's side runs.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


def side_ours(a):
    from derivgrad.kernels import set_threads

    set_threads(a.threads)
    from derivgrad.training.train import config, train

    m, _ = train(
        config(
            data=a.data,
            epochs=a.epochs,
            seed=a.seed,
            normalize=a.normalize,
            optimizer=a.optimizer,
            lr=a.lr,
            schedule=a.schedule,
        ),
        log=lambda s: None,
        progress=False,
    )
    return [
        dict(epoch=h["epoch"], seconds=h["seconds"], test_acc=h["test_acc"]) for h in m["history"]
    ]


def side_torch(a):
    import torch

    from derivgrad.training.bench_epoch import torch_epochs, torch_lenet

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    net, tensors = torch_lenet(a.data, normalize=a.normalize)
    opt = (
        torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9)
        if a.optimizer == "sgd"
        else torch.optim.Adam(net.parameters(), lr=a.lr)
    )
    steps = a.epochs * (len(tensors[1]) // 64)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if a.schedule == "cosine" else None
    )
    return torch_epochs(net, opt, tensors, a.epochs, a.seed, sched)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--optimizer", default="sgd")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--schedule", default="constant")
    ap.add_argument("--normalize", action="store_true")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--side", choices=["ours", "torch"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        rows = side_ours(a) if a.side == "ours" else side_torch(a)
        from derivgrad.training.bench_epoch import peak_rss_mb

        print(json.dumps(dict(rows=rows, peak_mb=peak_rss_mb())))
        return
    args = [x for x in sys.argv[1:]]
    sides = ["ours"]
    try:
        import torch  # noqa: F401

        sides.append("torch")
    except ImportError:
        print("PyTorch not installed: derivgrad's side only")
    runs = {s: [] for s in sides}
    for _ in range(a.repeats):
        for side in sides:
            p = subprocess.run(
                [sys.executable, __file__, "--side", side] + args, capture_output=True, text=True
            )
            if p.returncode:
                sys.exit(f"{side} side failed:\n{p.stderr}")
            runs[side].append(json.loads(p.stdout.strip().splitlines()[-1]))
    res = {}
    for side, rs in runs.items():
        rows = [
            dict(r, seconds=float(np.median([x["rows"][i]["seconds"] for x in rs])))
            for i, r in enumerate(rs[0]["rows"])
        ]
        res[side] = dict(rows=rows, peak_mb=max(x["peak_mb"] for x in rs))
    n = 60000 if a.data else 10000
    print(
        f"LeNet, batch 64, {a.optimizer} lr {a.lr}, {a.threads} threads, "
        f"data {a.data or 'embedded subset'}, "
        f"median of {a.repeats} alternated run(s)"
    )
    print(
        f"{'epoch':>5s} {'derivgrad s':>12s} {'samples/s':>10s} {'acc':>7s} "
        f"{'PyTorch s':>10s} {'samples/s':>10s} "
        f"{'acc':>7s} {'ratio':>6s}"
    )
    for i, r in enumerate(res["ours"]["rows"]):
        t = res.get("torch", {}).get("rows", [None] * (i + 1))[i]
        print(
            f"{r['epoch']:5d} {r['seconds']:12.2f} {n / r['seconds']:10.0f} "
            f"{100 * r['test_acc']:6.2f}% "
            + (
                f"{t['seconds']:10.2f} {n / t['seconds']:10.0f} {100 * t['test_acc']:6.2f}% "
                f"{r['seconds'] / t['seconds']:6.2f}"
                if t
                else ""
            )
        )
    print(
        f"peak RSS: derivgrad {res['ours']['peak_mb']:.0f} MB"
        + (f", PyTorch {res['torch']['peak_mb']:.0f} MB" if "torch" in res else "")
    )


if __name__ == "__main__":
    main()
