"""The cyclic garbage collector paused while a derivation builds its expressions.

A large derivation allocates millions of SymPy objects that live as long as the derivation
(immutable trees: no reference cycles to collect).  CPython's collector is triggered by
allocations and its full passes walk every tracked object, so the time per allocation grows
with everything already built: the closed form of conv2d 24×24 with 3 channels and 4
filters took 4.7 s with the collector and 2.2 s without (cProfile, this machine), most of it
in collections.  Reference counting still frees everything that is dropped; cycles made
meanwhile are collected once the collector runs again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """The collector off for the block (nested blocks: the outermost turns it back on, and
    only if it was on)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
