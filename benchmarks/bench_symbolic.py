"""How the symbolic derivation of conv2d grows with the input size.

    python benchmarks/bench_symbolic.py

For an n×n input and a 3×3 filter (padding 1, one channel and filter), prints the time to
build the derivation, the Jacobians, the closed forms and the proof, next to the number of
Jacobian entries (input size × output size) — the growth to compare against.
"""

import time

import derivgrad

print(
    f"{'input':>7s} {'J entries':>10s} {'nonzero':>8s} {'derive s':>9s} {'verify s':>9s} "
    f"{'total s':>8s} "
    f"{'µs/J entry':>11s}"
)
for n in (3, 4, 6, 8, 10, 12):
    t0 = time.perf_counter()
    d = derivgrad.derive("conv2d", input=(n, n), kernel=(3, 3), padding=1)
    t1 = time.perf_counter()
    d.verify()
    t2 = time.perf_counter()
    J = d.jacobian_array("x")
    nz = sum(1 for e in J.reshape(-1) if e != 0)
    entries = J.size + d.jacobian_array("w").size + d.jacobian_array("b").size
    print(
        f"{n:>4d}x{n:<2d} {entries:>10d} {nz:>8d} {t1 - t0:9.2f} {t2 - t1:9.2f} {t2 - t0:8.2f} "
        f"{1e6 * (t2 - t0) / entries:11.1f}"
    )
t = time.perf_counter()
derivgrad.derive("conv2d", input=(3, 3), kernel=(2, 2)).verify()
print(f"3x3 input, 2x2 filter: {time.perf_counter() - t:.2f} s")
t = time.perf_counter()
derivgrad.derive(
    "conv2d", input=(6, 6), kernel=(3, 3), channels=2, filters=2, stride=1, padding=1
).verify()
print(f"6x6 input, 3x3 filter, 2 channels, 2 filters, padding 1: {time.perf_counter() - t:.2f} s")
