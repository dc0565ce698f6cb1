"""Output files that are either the old version or the complete new one, never a torn one.

:func:`write_atomic` writes into a temporary file beside the target, fsyncs it, renames it
over the target and fsyncs the directory.  A symlink is followed (the file it points to is
replaced, the link stays a link).  Temporary files are named ``.NAME.PID.tmp``: one left by a
process that was killed (``kill -9`` between the write and the rename) is removed by the
next write to the same target once its process is gone.

:func:`check_writable` is the up-front check of an output path: run it before any work
whose result would be lost if the path turned out to be unwritable at the end.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .errors import UsageError


def resolve(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` must replace: ``path`` with symlinks followed."""
    return Path(os.path.realpath(os.fspath(path)))


def check_writable(path: str | os.PathLike, what: str, *, exists_ok: bool = True) -> Path:
    """Refuse, before any work, an output ``path`` that could not be written at the end.

    ``what`` names the option (``--checkpoint``) in the message.  Checks: not a directory,
    its directory exists and a file can be created in it (a real probe, so read-only mounts
    and permissions are both caught); with ``exists_ok=False`` an existing file is refused.
    Returns the resolved target (symlinks followed).
    """
    if os.fspath(path) == "":
        raise UsageError(f"{what}: the path is empty")
    target = resolve(path)
    if target.is_dir():
        raise UsageError(f"{what} {path}: is a directory, expected a file name")
    if target.exists() and not target.is_file():
        raise UsageError(f"{what} {path}: exists and is not a regular file")
    if not exists_ok and target.exists():
        raise UsageError(f"{what} {path}: exists")
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{what} {path}: directory {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot write in {parent} ({e.strerror or e})") from None
    if target.exists() and not os.access(target, os.W_OK):
        # a rename would replace it anyway, but a read-only file is a user's "keep this"
        raise UsageError(f"{what} {path}: the file is read-only")
    return target


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(target: Path) -> None:
    """Delete ``.NAME.PID.tmp`` files beside ``target`` whose process no longer runs."""
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        pid = tmp.name[len(target.name) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[tuple[IO[bytes], Path]]:
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    f = open(tmp, "wb")
    try:
        yield f, tmp
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then put it in place of ``path``.

    On any error (a full disk included) the temporary file is removed and ``path`` is left
    as it was.  Returns the file written (``path`` with symlinks followed).
    """
    target = resolve(path)
    remove_orphans(target)
    with _temporary(target) as (f, tmp):
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return target


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`write_atomic` for a ready ``bytes`` payload (documents, JSON)."""
    return write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """:func:`write_atomic` for text (a LaTeX or Markdown document)."""
    return write_bytes_atomic(path, text.encode(encoding))
