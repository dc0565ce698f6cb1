"""Kernel timings against PyTorch CPU (or NumPy), side by side in one process.

    python benchmarks/bench_kernels.py [--repeats 20] [--threads N] [--json]

The same table as ``derivgrad bench``.  Compile time is measured by
``benchmarks/bench_startup.py``.
"""

import argparse

from derivgrad.bench import run

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    run(a.repeats, a.threads, a.json)
