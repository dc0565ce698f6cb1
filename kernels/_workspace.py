"""Reusable scratch buffers, one set per Python thread.

Large fresh allocations pay a page fault per 4 KiB page on first touch; the convolution
wrappers call this once per call instead of allocating their im2col buffers anew.
"""

import threading

import numpy as np

_local = threading.local()

# Columns of at most this many bytes are materialised at once; larger batches are cut into
# chunks of samples.  32 MiB keeps the GEMM large enough to run at full speed on both cores
# while bounding memory for large inputs (8x3x224x224 with a 7x7 kernel needs 59 MB whole).
CHUNK_BYTES = 32 << 20


def buffer(name, size, dtype):
    """A 1-D array of at least ``size`` elements of ``dtype``; contents are undefined."""
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    key = (name, np.dtype(dtype))
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, 1), dtype=dtype)
        bufs[key] = buf
    return buf[:size]


def samples_per_chunk(n, bytes_per_sample):
    return max(1, min(n, CHUNK_BYTES // max(1, bytes_per_sample)))
