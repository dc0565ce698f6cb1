"""Reusable scratch buffers, one set per Python thread.

Large fresh allocations pay a page fault per 4 KiB page on first touch; the convolution
wrappers call this once per call instead of allocating their im2col buffers anew.
"""

import threading

import numpy as np

_local = threading.local()


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
