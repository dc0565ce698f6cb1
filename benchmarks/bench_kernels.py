"""Kernel timings against PyTorch CPU (or NumPy), side by side in one process, at each
thread count, with the LeNet epoch and the GEMM ceiling.

    python benchmarks/bench_kernels.py [--repeats 20] [--threads 1,2,4] [--no-epoch] [--step]

The same table as ``derivgrad bench`` (same options; this calls it).  Compile time is
measured by ``benchmarks/bench_startup.py``.
"""

import sys

from derivgrad.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
