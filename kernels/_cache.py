"""Compiled-kernel caches that go stale with any kernel source, not only their own file.

Numba keys a cached kernel on the contents of the file that defines it.  A kernel calling
a helper from another file (``conv_forward`` calls ``im2col_block``) keeps its cached
machine code when only the helper's file changes, so edited or upgraded sources would run
the old helper: a bug planted in ``im2col_block`` went unseen by the tests until the cache
was cleared.  :func:`install` adds one digest of every source file of this package to the
stamp of each cache entry of those files, so that changing any of them recompiles them all
(about 30 s once) and never runs stale code.

It wraps Numba's cache locators (``CacheImpl._locator_classes``, not a public API); on a
Numba without them the per-file stamp stays, and this is said in :data:`INSTALLED`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from numba.core import caching

HERE = str(Path(__file__).resolve().parent)


def digest(directory: str | os.PathLike[str]) -> str:
    """sha256 over the names and contents of the ``*.py`` files in ``directory``."""
    h = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


DIGEST = digest(HERE)


def _covers(py_file: str) -> bool:
    return os.path.dirname(os.path.abspath(py_file)) == HERE


def _guarded(base: type) -> type:
    class Guarded(base):
        @classmethod
        def from_function(cls, py_func, py_file):
            return super().from_function(py_func, py_file) if _covers(py_file) else None

        def get_source_stamp(self):
            return (super().get_source_stamp(), DIGEST)

    Guarded.__name__ = Guarded.__qualname__ = "PackageStamped" + base.__name__
    return Guarded


def install() -> bool:
    """Put package-stamped copies of Numba's locators first (once); returns whether it could."""
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list):
        return False
    if not any(c.__name__.startswith("PackageStamped") for c in classes):
        impl._locator_classes = [_guarded(c) for c in classes] + classes  # type: ignore[union-attr]
    return True


INSTALLED = install()
