"""Tolerances for comparing a kernel with a float64 reference, relative to the largest
reference magnitude.

* float64: 1e-10.  Kernels and references sum the same products in different orders; the
  round-off of a sum of n terms is about n·2⁻⁵³ ≈ n·1e-16 of the largest term, far below
  1e-10 for every size drawn here (n ≤ 10⁴).
* float32: 1e-4.  Inputs are exactly representable in both; the kernel accumulates in
  float32 (BLAS), whose error is about √n·6e-8 typically and n·6e-8 at worst, i.e. ≤ 1e-4
  for the reductions drawn here (n up to ~1.5·10³ per output).
"""

import numpy as np

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


def assert_close(got, ref, dtype, what="", scale=0.0):
    """``max|got - ref| <= rtol * max(max|ref|, scale)``; ``scale`` is the size of the terms
    that were summed when the result can cancel to far below them (e.g. ``p - e_y``)."""
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype} != {np.dtype(dtype)}"
    scale = max(np.abs(ref).max(initial=0.0), scale, 1e-30)
    err = np.abs(got.astype(np.float64) - ref).max(initial=0.0) / scale
    assert err <= RTOL[np.dtype(dtype)], (
        f"{what}: relative error {err:.3g} > {RTOL[np.dtype(dtype)]:g}"
    )
