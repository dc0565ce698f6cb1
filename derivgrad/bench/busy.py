"""``derivgrad bench --busy N``: the LeNet step and each kernel beside N busy-loop processes.

A busy machine (a laptop with a browser open, a shared server) is where a thread pool that
spins or waits for every worker turns a fast kernel slow.  This starts N processes that
each spin one core, then measures, each configuration in a fresh process of its own while
the neighbours run: derivgrad at its default thread count, at 1 thread and at the core
count, derivgrad with spinning workers (libgomp's default ``GOMP_SPINCOUNT=300000``, what
the kernels ran with before their workers slept when idle), and PyTorch at its default
(when installed).  Times are means over the repeats, not medians: under contention the
slow calls are the cost.

The neighbours stop by themselves: each ends after ``BUSY_LIMIT_S`` or as soon as its
parent is gone, whichever comes first, so an interrupted or killed benchmark leaves no
process spinning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

BUSY_LIMIT_S = 900.0
# Each neighbour: a pure-Python loop (no allocation, no I/O), checking its time limit and
# whether its parent still lives every ~10 ms of spinning.
BUSY_LOOP = """
import os, sys, time
end, parent = time.monotonic() + float(sys.argv[1]), int(sys.argv[2])
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(100000):
        pass
"""
WARMUP = 2


def start_neighbours(n: int, limit_s: float = BUSY_LIMIT_S) -> list[subprocess.Popen]:
    """``n`` busy-loop processes, each ending after ``limit_s`` or when this process ends."""
    cmd = [sys.executable, "-c", BUSY_LOOP, str(limit_s), str(os.getpid())]
    quiet = subprocess.DEVNULL
    return [subprocess.Popen(cmd, stdin=quiet, stdout=quiet, stderr=quiet) for _ in range(n)]


def stop_neighbours(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def _timed(f: Callable[[], object], repeats: int) -> float:
    """Mean milliseconds per call over ``repeats`` calls after :data:`WARMUP` untimed ones."""
    for _ in range(WARMUP):
        f()
    t = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - t) / repeats * 1e3


def _ours_calls() -> list[tuple[str, Callable[[], object]]]:
    from derivgrad import kernels as K
    from derivgrad.bench.kernels import CONV_CASES, LINEAR_CASE, POOL_CASE
    from derivgrad.training.bench_step import _data, _step
    from derivgrad.training.model import SGD, lenet

    rng = np.random.default_rng(0)
    xtr, ytr = _data(64 * 8, rng)
    net = lenet(seed=0)
    opt = SGD(net.named_params(), 0.01, 0.9)
    batch = iter(range(10**9))
    step = lambda: _step(net, opt, xtr, ytr, np.arange(64) + 64 * (next(batch) % 8))
    calls: list[tuple[str, Callable[[], object]]] = [("LeNet step (batch 64, SGD)", step)]
    for N, C, H, W, CO, KS, s, p in CONV_CASES:
        x, w, b = _f32(rng, N, C, H, W), _f32(rng, CO, C, KS, KS), _f32(rng, CO)
        dy = _f32(rng, *K.conv2d_forward(x, w, b, s, p).shape)
        name = f"conv2d {(N, C, H, W, CO, KS, s, p)}"
        calls.append((name + " fwd", partial(K.conv2d_forward, x, w, b, s, p)))
        calls.append((name + " bwd", partial(K.conv2d_backward, dy, x, w, s, p)))
    x = _f32(rng, *POOL_CASE)
    y, idx = K.maxpool2d_forward(x, 2)
    dy = _f32(rng, *y.shape)
    calls.append((f"maxpool2d 2x2/2 {POOL_CASE} fwd", lambda: K.maxpool2d_forward(x, 2)))
    calls.append(
        (f"maxpool2d 2x2/2 {POOL_CASE} bwd", lambda: K.maxpool2d_backward(dy, idx, x.shape))
    )
    N, IN, OUT = LINEAR_CASE
    xl, wl, bl, dyl = _f32(rng, N, IN), _f32(rng, OUT, IN), _f32(rng, OUT), _f32(rng, N, OUT)
    calls.append((f"linear {IN}->{OUT} batch {N} fwd", lambda: K.linear_forward(xl, wl, bl)))
    calls.append((f"linear {IN}->{OUT} batch {N} bwd", lambda: K.linear_backward(dyl, xl, wl)))
    return calls


def _torch_calls() -> list[tuple[str, Callable[[], object]]]:
    import torch
    import torch.nn.functional as F

    from derivgrad.bench.kernels import CONV_CASES, LINEAR_CASE, POOL_CASE
    from derivgrad.training.bench_epoch import torch_lenet

    torch.manual_seed(0)
    net, (xtr, ytr, _, _) = torch_lenet(None, limit=64 * 8)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    batch = iter(range(10**9))

    def step():
        i = 64 * (next(batch) % 8)
        opt.zero_grad(set_to_none=True)
        lossf(net(xtr[i : i + 64]), ytr[i : i + 64]).backward()
        opt.step()

    rng = np.random.default_rng(0)
    t = lambda *shape: torch.from_numpy(_f32(rng, *shape))
    calls: list[tuple[str, Callable[[], object]]] = [("LeNet step (batch 64, SGD)", step)]
    for N, C, H, W, CO, KS, s, p in CONV_CASES:
        x, w, b = t(N, C, H, W), t(CO, C, KS, KS), t(CO)
        dy = t(*F.conv2d(x, w, b, s, p).shape)
        name = f"conv2d {(N, C, H, W, CO, KS, s, p)}"
        calls.append((name + " fwd", partial(F.conv2d, x, w, b, s, p)))
        calls.append(
            (
                name + " bwd",
                partial(
                    torch.ops.aten.convolution_backward,
                    *(dy, x, w, [CO], [s, s], [p, p], [1, 1], False, [0, 0], 1, [True] * 3),
                ),
            )
        )
    x = t(*POOL_CASE)
    y, it = F.max_pool2d(x, 2, return_indices=True)
    dy = t(*y.shape)
    calls.append(
        (f"maxpool2d 2x2/2 {POOL_CASE} fwd", lambda: F.max_pool2d(x, 2, return_indices=True))
    )
    calls.append(
        (
            f"maxpool2d 2x2/2 {POOL_CASE} bwd",
            lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                dy, x, [2, 2], [2, 2], [0, 0], [1, 1], False, it
            ),
        )
    )
    N, IN, OUT = LINEAR_CASE
    xl, wl, bl, dyl = t(N, IN), t(OUT, IN), t(OUT), t(N, OUT)
    calls.append((f"linear {IN}->{OUT} batch {N} fwd", lambda: F.linear(xl, wl, bl)))
    calls.append(
        (f"linear {IN}->{OUT} batch {N} bwd", lambda: (dyl @ wl, dyl.t() @ xl, dyl.sum(0)))
    )
    return calls


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def side(name: str, threads: int | None, repeats: int) -> dict[str, Any]:
    """Measure one column in this process: ``name`` is ``"ours"`` or ``"torch"``;
    ``threads`` None is the library's default."""
    if name == "torch":
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        calls, info = _torch_calls(), dict(threads=torch.get_num_threads())
    else:
        from derivgrad import kernels as K

        K.set_threads(threads)
        calls, info = _ours_calls(), dict(K.thread_settings())
    return dict(info, ms={case: _timed(f, repeats) for case, f in calls})


def _column(name: str, threads: int | None, repeats: int, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "derivgrad.bench.busy", "--side", name, "--repeats", str(repeats)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the {name} side of the busy benchmark failed: {tail}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def columns(cores: int) -> list[tuple[str, str, int | None, dict[str, str]]]:
    """``(label, side, threads, environment)`` of each column."""
    from derivgrad.kernels._threads import ENV, WAIT_VARS

    env = dict(os.environ)
    mine = {k: v for k, v in env.items() if k != ENV}  # the default: no count given
    spin = {k: v for k, v in mine.items() if k not in WAIT_VARS}
    spin["GOMP_SPINCOUNT"] = "300000"  # libgomp's own default when OMP_WAIT_POLICY is unset
    cols = [
        ("default", "ours", None, mine),
        ("1 thread", "ours", 1, env),
        (f"{cores} threads", "ours", cores, env),
        ("spinning", "ours", None, spin),
    ]
    if _torch_installed():
        cols.append(("PyTorch", "torch", None, env))
    return cols


def measure(busy: int, repeats: int, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Every column beside ``busy`` neighbours; returns ``{"busy", "cores", "load_before",
    "columns": [{"label", "threads", ..., "ms": {case: ms}}]}``."""
    from derivgrad.kernels._threads import available_cpus

    cores = available_cpus()
    out: dict[str, Any] = dict(busy=busy, cores=cores, repeats=repeats)
    out["load_before"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    out["blas"] = _blas_line()
    procs = start_neighbours(busy)
    try:
        time.sleep(0.2)  # let the neighbours reach their loops
        cols = []
        for label, name, threads, env in columns(cores):
            log(f"busy {busy}: {label}")
            cols.append(dict(_column(name, threads, repeats, env), label=label))
    finally:
        stop_neighbours(procs)
    out["columns"] = cols
    out["load_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return out


def _blas_line() -> str:
    from derivgrad import kernels as K

    line = ", ".join(f"{b['version']} {b['architecture']}" for b in K.blas_info())
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return line + (f"; OPENBLAS_CORETYPE={coretype} is set" if coretype else "")


def print_table(m: dict[str, Any], out: Callable[..., None] = print) -> None:
    cols = m["columns"]
    load = m["load_before"]
    out(
        f"{m['busy']} busy-loop process(es) beside each measurement, {m['cores']} core(s) "
        "available"
        + (f"; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else "")
    )
    out(
        f"ms per call, mean of {m['repeats']} after {WARMUP} untimed; each column in a "
        f"process of its own; BLAS: {m['blas']}"
    )
    for c in cols:
        if "wait" in c:
            out(
                f"  {c['label']}: {c['threads']} thread(s), {c['layer']} layer, waiting {c['wait']}"
            )
        else:
            out(f"  {c['label']}: {c['threads']} thread(s)")
    default = cols[0]
    one = next(c for c in cols if c["label"] == "1 thread")
    torch = next((c for c in cols if c["label"] == "PyTorch"), None)
    if torch is None:
        out("  PyTorch: not installed (pip install torch to compare)")
    labels = [c["label"] for c in cols] + ["default/1 thread"]
    labels += ["default/PyTorch"] if torch else []
    widths = [max(9, len(lab)) for lab in labels]
    head = f"{'case':42s}" + "".join(f" | {lab:>{w}s}" for lab, w in zip(labels, widths))
    out(head)
    out("-" * len(head))
    for case, ms in default["ms"].items():
        cells = [c["ms"].get(case, float("nan")) for c in cols] + [ms / one["ms"][case]]
        cells += [ms / torch["ms"][case]] if torch else []
        out(f"{case:42s}" + "".join(f" | {v:{w}.2f}" for v, w in zip(cells, widths)))


def run(
    busy: int, repeats: int = 20, as_json: bool = False, out: Callable[..., None] = print
) -> dict[str, Any]:
    """Measure and print the table (or one JSON object); returns the measurements."""
    log = (lambda s: None) if as_json else (lambda s: print(s, file=sys.stderr))
    m = measure(busy, repeats, log)
    if as_json:
        out(json.dumps(m))
    else:
        print_table(m, out)
    return m


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="one column of derivgrad bench --busy")
    ap.add_argument("--side", choices=["ours", "torch"], required=True)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args(argv)
    print(json.dumps(side(a.side, a.threads, a.repeats)))


if __name__ == "__main__":
    main()
