"""One training step of the README's own network (``examples/networks.py:model``: conv 1->16
3x3 pad 1, batch norm, ReLU, Residual(Pad2d 1, a defined depthwise 3x3, ReLU), max pool 2,
flatten, linear 3136->10) with ``derivgrad.nn`` and with the same network in PyTorch on the
CPU: same batch, same initial weights (copied from derivgrad's), same thread count, SGD
momentum 0.9.

    python benchmarks/bench_model.py [--threads 1 2] [--batch 64] [--steps 60] [--repeats 3]
                                     [--profile]

Before timing, the two sides' first step is compared: loss, every parameter's gradient and
the updated parameters must agree to float32 rounding (relative 1e-4 of each array's scale),
else the benchmark stops.  Then, per thread count, each side runs ``--steps`` steps (after a
warm-up) in ``--repeats`` alternated rounds (ours, PyTorch, ours, ...); printed: the median
step time of each side in ms and the ratio derivgrad/PyTorch.  ``--profile`` adds the time
of each of derivgrad's layers (forward, backward), the loss and the optimizer.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))


def ours(seed):
    from networks import model

    from derivgrad import nn

    net = nn.build(model(), (1, 28, 28), seed=seed)
    return net, nn.SGD(net.named_params(), 0.01, 0.9)


def theirs(net):
    """The same network in PyTorch, weights copied from derivgrad's ``net``."""
    import torch
    from torch import nn as tnn

    class Residual(tnn.Module):
        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x):
            return self.block(x) + x

    t = tnn.Sequential(
        tnn.Conv2d(1, 16, 3, padding=1),
        tnn.BatchNorm2d(16),
        tnn.ReLU(),
        Residual(
            tnn.Sequential(
                tnn.ZeroPad2d(1), tnn.Conv2d(16, 16, 3, groups=16, bias=False), tnn.ReLU()
            )
        ),
        tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(16 * 14 * 14, 10),
    )
    p = net.named_params()
    src = {
        "0.weight": p["0.w"],
        "0.bias": p["0.b"],
        "1.weight": p["1.gamma"],
        "1.bias": p["1.beta"],
        "3.block.1.weight": p["3.0.1.w"][:, None],
        "6.weight": p["6.w"],
        "6.bias": p["6.b"],
    }
    with torch.no_grad():
        for k, v in t.named_parameters():
            v.copy_(torch.from_numpy(np.array(src[k]).reshape(v.shape)))
    return t, torch.optim.SGD(t.parameters(), lr=0.01, momentum=0.9), src


def step_ours(net, opt, x, y):
    loss, _ = net.loss_and_grads(x, y)
    opt.step(net.named_grads())
    return loss


def step_theirs(t, opt, x, y):
    import torch

    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(t(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


NAMES = {  # PyTorch's parameter name -> derivgrad's
    "0.weight": "0.w",
    "0.bias": "0.b",
    "1.weight": "1.gamma",
    "1.bias": "1.beta",
    "3.block.1.weight": "3.0.1.w",
    "6.weight": "6.w",
    "6.bias": "6.b",
}


def agree(seed, x, y):
    """Stop unless one step of derivgrad (float32) is as close to the same step of PyTorch
    in float64 as PyTorch's own float32 step is (within 10x, or 1e-4 relative); return the
    loss and the largest relative difference of each float32 side.  A difference is taken
    relative to the array's largest entry, or a thousandth of the largest gradient where
    the array is about zero (the first convolution's bias feeds batch norm, which cancels
    it: its gradient is rounding)."""
    import torch

    net, opt = ours(seed)
    t32, o32, _ = theirs(net)
    t64, _, _ = theirs(net)
    t64 = t64.double()
    o64 = torch.optim.SGD(t64.parameters(), lr=0.01, momentum=0.9)
    l1 = step_ours(net, opt, x, y)
    l2 = step_theirs(t32, o32, torch.from_numpy(x), torch.from_numpy(y))
    l3 = step_theirs(t64, o64, torch.from_numpy(x).double(), torch.from_numpy(y))
    errs = {"loss": (abs(l1 - l3) / abs(l3), abs(l2 - l3) / abs(l3))}
    g, p = net.named_grads(), net.named_params()
    ref = {k: (v.grad.numpy(), v.detach().numpy()) for k, v in t64.named_parameters()}
    gmax = max(float(np.abs(r[0]).max()) for r in ref.values())
    for tk, v in t32.named_parameters():
        k = NAMES[tk]
        for i, (what, a, b) in enumerate(
            (("gradient", g[k], v.grad), ("updated", p[k], v.detach()))
        ):
            c = ref[tk][i].reshape(a.shape)
            scale = max(float(np.abs(c).max()), 1e-3 * gmax)
            b = b.numpy().reshape(a.shape)
            errs[f"{what} {k}"] = (
                float(np.abs(a - c).max()) / scale,
                float(np.abs(b - c).max()) / scale,
            )
    for what, (mine, torch32) in errs.items():
        if mine > max(1e-4, 10 * torch32):
            sys.exit(
                f"{what}: derivgrad differs from PyTorch float64 by {mine:.1e} (relative), "
                f"PyTorch float32 by {torch32:.1e}"
            )
    return l1, max(e[0] for e in errs.values()), max(e[1] for e in errs.values())


def profile(net, opt, xs, ys):
    acc = {}

    def timed(name, fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            r = fn(*a, **k)
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
            return r

        return run

    leaves = list(net.root.leaves())
    for m in leaves:
        m.forward = timed(f"{m.name} {m.describe()[:40]} forward", m.forward)
    for m in reversed(leaves):
        m.backward = timed(f"{m.name} {m.describe()[:40]} backward", m.backward)
    for c in net.layers:  # containers' own glue (Residual's adds)
        if not hasattr(c, "inner") and c not in leaves:
            c.forward = timed(f"{c.name} {c.describe()} own forward (incl. block)", c.forward)
    opt.step = timed("optimizer", opt.step)
    t0 = time.perf_counter()
    for x, y in zip(xs, ys):
        step_ours(net, opt, x, y)
    total = time.perf_counter() - t0
    n = len(xs)
    for k, v in acc.items():
        print(f"  {1000 * v / n:8.3f} ms  {k}")
    print(f"  {1000 * total / n:8.3f} ms  whole step")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    import torch

    from derivgrad.kernels import set_threads

    rng = np.random.default_rng(a.seed)
    xs = [rng.random((a.batch, 1, 28, 28), dtype=np.float32) for _ in range(a.steps)]
    ys = [rng.integers(0, 10, a.batch).astype(np.int64) for _ in range(a.steps)]
    txs, tys = [torch.from_numpy(x) for x in xs], [torch.from_numpy(y) for y in ys]
    loss, mine, torch32 = agree(a.seed, xs[0], ys[0])
    print(
        f"first step agrees with PyTorch in float64: loss {loss:.6f}; largest relative "
        f"difference of loss, gradients, updated parameters: derivgrad {mine:.1e}, "
        f"PyTorch float32 {torch32:.1e}"
    )
    print(f"own network (examples/networks.py:model), batch {a.batch}, SGD momentum 0.9")
    print(f"median of {a.repeats} alternated rounds of {a.steps} steps; torch {torch.__version__}")
    print(f"{'threads':>7s} {'derivgrad ms':>13s} {'PyTorch ms':>11s} {'ratio':>6s}")
    for th in a.threads:
        set_threads(th)
        torch.set_num_threads(th)
        net, opt = ours(a.seed)
        t, topt, _ = theirs(net)
        for i in range(5):  # warm-up: kernels loaded, workspaces faulted in
            step_ours(net, opt, xs[i], ys[i])
            step_theirs(t, topt, txs[i], tys[i])
        mine, torch_ = [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            for x, y in zip(xs, ys):
                step_ours(net, opt, x, y)
            mine.append((time.perf_counter() - t0) / a.steps)
            t0 = time.perf_counter()
            for x, y in zip(txs, tys):
                step_theirs(t, topt, x, y)
            torch_.append((time.perf_counter() - t0) / a.steps)
        m, p = statistics.median(mine), statistics.median(torch_)
        print(f"{th:7d} {1000 * m:13.2f} {1000 * p:11.2f} {m / p:6.2f}")
        if a.profile:
            net, opt = ours(a.seed)
            step_ours(net, opt, xs[0], ys[0])
            print(f"derivgrad per layer, {th} thread(s), mean of {a.steps} steps:")
            profile(net, opt, xs, ys)


if __name__ == "__main__":
    main()
