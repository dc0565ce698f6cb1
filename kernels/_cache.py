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

Where the compiled code goes: Numba writes beside the sources (``__pycache__``) or to a
user-wide directory under ``$HOME``; with neither writable (a root-owned install run by a
service account, a container with a read-only ``HOME``) every ``cache=True`` decoration
raises "no locator available", so importing the kernels failed.  :func:`choose_location`
then points Numba at ``$DERIVGRAD_CACHE_DIR/numba``, else at a private directory under the
temporary directory, else turns caching off (each process compiles), with one warning line.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from pathlib import Path

from numba.core import caching, config
from numba.core.dispatcher import Dispatcher

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


def untrusted(
    path: str | os.PathLike[str], must_own: bool = False, directory: bool = True
) -> str | None:
    """Why the existing directory ``path`` may not hold code that is loaded and run (Numba's
    index files are pickles, a defined layer's module is Python), or ``None``.  Like ssh and
    pip: a directory any user can write into is refused, and so is one another user owns
    that its group can write (or, with ``must_own``, one another user owns at all).  With
    ``directory=False`` the same rule for a file of code itself."""
    st = os.stat(path)
    if directory and not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    mine = st.st_uid == os.geteuid()
    if must_own and not mine:
        return "another user owns it"
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and not mine):
        return "other users can write to it"
    return None


def writable(path: str | os.PathLike[str]) -> bool:
    """Whether Numba could keep a cache in ``path`` (its own test: create, write a file)."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _usable(path: str, must_own: bool) -> str | None:
    """``None`` when ``path`` can be created or exists, is writable and trusted; else why not."""
    if not writable(path):
        return "it cannot be created or written"
    return untrusted(path, must_own)


def _numba_defaults_work() -> bool:
    if getattr(config, "CACHE_DIR", ""):
        return True  # the user chose (NUMBA_CACHE_DIR): Numba's own rules apply
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return writable(os.path.join(HERE, "__pycache__")) or writable(os.path.join(home, "numba"))


def choose_location() -> tuple[str | None, str]:
    """``(directory, warning)``: ``(None, "")`` when Numba's defaults work; else the
    directory Numba is pointed at (``None``: no cache) and the one line saying so."""
    if _numba_defaults_work():
        return None, ""
    tried = []
    env = os.environ.get("DERIVGRAD_CACHE_DIR")
    # (directory, whether it must be the user's own): the shared temporary directory holds
    # only a directory of the user's own, kept private
    candidates = [(os.path.join(env, "numba"), False)] if env else []
    try:
        tmp = tempfile.gettempdir()
        candidates.append((os.path.join(tmp, f"derivgrad-numba-{os.geteuid()}"), True))
    except OSError:  # no usable temporary directory at all
        pass
    for path, private in candidates:
        why = _usable(path, must_own=private)
        if why is None:
            if private:
                os.chmod(path, 0o700)
            return path, (
                "derivgrad: warning: neither the package nor the home directory can hold "
                f"compiled kernels; caching them in {path}"
            )
        tried.append(f"{path} ({why})")
    return None, (
        "derivgrad: warning: no directory can hold compiled kernels (the package, the home "
        f"directory, {'; '.join(tried) or 'no temporary directory'}): compiling them in "
        "every process"
    )


def _apply() -> str | None:
    path, warning = choose_location()
    if warning:
        print(warning, file=sys.stderr)
    if path is not None:
        # the environment too: Numba re-reads NUMBA_* variables when one changes, and child
        # processes (the MPI ranks, the suite's subprocesses) then find the same place
        os.environ["NUMBA_CACHE_DIR"] = path
        config.CACHE_DIR = path  # type: ignore[attr-defined]
    elif warning:
        # no locator can exist, so every cache=True decoration (ours, the ops', generated
        # modules', a user's) would raise; compiling in memory is what is left
        Dispatcher.enable_caching = lambda self: None  # type: ignore[method-assign]
    return path


LOCATION = _apply()
"""Where Numba was pointed because its defaults could not be written (``None``: unchanged or
no cache at all)."""
