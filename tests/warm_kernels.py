"""Compile the Winograd kernels into the on-disk cache: started in the background by
``conftest.py`` when a session collects ``test_kernels_conv.py``.

They are the suite's one big cold compile: seven kernels (F(2x2) forward and dW in both
dtypes, F(4x4)'s two in float32, the filter transform) take about 120 s of LLVM on a cold
cache, all of it on one core inside ``test_winograd_kernels_match_reference``, which runs
well past the suite's midpoint.  Compiled here on the other core while the earlier tests
run, that test loads them instead.  Numba writes a cache entry atomically (a temporary file
renamed), so a test that compiles the same kernel at the same time only duplicates work.
Nothing here is checked: ``test_kernels_conv.py`` checks these kernels.
"""

import numpy as np

from derivgrad.kernels import _winograd


def main() -> None:
    # The tests' argument types: C-contiguous arrays, Python ints (Numba's int64).
    for tile, dtype in ((4, np.float32), (2, np.float32), (2, np.float64)):
        x = np.ones((1, 2, 5, 5), dtype)
        w = np.ones((3, 2, 3, 3), dtype)
        y = _winograd.forward(x, w, np.zeros(3, dtype), 1, block_tiles=1, tile=tile)
        _winograd.weight_grad(x, y, 1, block_tiles=1, tile=tile)


if __name__ == "__main__":
    main()
