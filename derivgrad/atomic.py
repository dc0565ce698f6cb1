"""The one writer of every output path: either the old file or the complete new one, never a
torn one, and never a file the user did not name.

:func:`check_output` is the up-front check of an output option (run it before any work whose
result would be lost if the path turned out to be unwritable at the end); :func:`write_output`
writes a command's result there; :func:`write_atomic` is the replacing write under both.

What an output path may be:

- ``-``, or the file that standard output already is (``/dev/stdout`` into a pipe or a
  socket): written to standard output as a stream;
- a character device or a FIFO (``/dev/null``, ``mkfifo``), where the caller allows a stream:
  opened and written into, never replaced (replacing ``/dev/null`` with a regular file would
  break the system for every other program);
- a regular file, or a name in an existing directory: replaced atomically.  A symlink is
  followed (the file it points to is replaced, the link stays a link) and the replaced file's
  permission bits are kept (a private file stays private).

Refused, each with one line naming the option: an empty path, a directory, a block device or
socket, a missing directory, a directory that cannot be written, a read-only file (judged by
its mode bits, since root's writes ignore them: ``chmod 444`` is a user's "keep this"), and a
file the same command reads (``--define @layer.dg -o layer.dg``).

:func:`write_atomic` writes into a temporary file beside the target, flushes and fsyncs it,
renames it over the target and fsyncs the directory.  Temporary files are named
``.NAME.PID.tmp``: one left by a process that was killed (``kill -9`` between the write and the
rename) is removed by the next write to the same target once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from .errors import UsageError

STDOUT = "-"


def resolve(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` must replace: ``path`` with symlinks followed."""
    return Path(os.path.realpath(os.fspath(path)))


def _stat(path: str | os.PathLike) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError:  # a dangling /proc/self/fd link, a loop: not a place to write
        return None


def _is_stdout(st: os.stat_result | None) -> bool:
    if st is None:
        return False
    try:
        out = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino)


def is_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` is written as a stream (standard output, a character device, a FIFO)
    rather than replaced."""
    if os.fspath(path) == STDOUT:
        return True
    st = _stat(path)
    return _is_stdout(st) or (
        st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode))
    )


def read_only(st: os.stat_result) -> bool:
    """A file its owner may not write (``chmod 444``), judged by its mode bits as well as by
    ``os.access``: root's writes ignore permissions, the user's intent does not change."""
    if os.geteuid() == st.st_uid:
        return not st.st_mode & stat.S_IWUSR
    return not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _same_file(a: os.stat_result, path: str | os.PathLike) -> bool:
    b = _stat(path)
    return b is not None and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_output(
    path: str | os.PathLike,
    what: str,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    exists_ok: bool = True,
    stream_ok: bool = False,
) -> Path:
    """Refuse, before any work, an output ``path`` that could not or must not be written.

    ``what`` names the option (``--checkpoint``) in the message; ``inputs`` are the files
    the same command reads (none may be the output); ``stream_ok`` admits ``-``, standard
    output, character devices and FIFOs (written into, never replaced); with
    ``exists_ok=False`` an existing file is refused.  Returns the resolved target (symlinks
    followed), or ``Path(path)`` for a stream.
    """
    p = os.fspath(path)
    if p == "":
        raise UsageError(f"{what}: the path is empty (use - for standard output)")
    if "\0" in p:
        raise UsageError(f"{what} {p!r}: the path contains a NUL character")
    if p == STDOUT:
        if not stream_ok:
            raise UsageError(f"{what} -: needs a file, not standard output")
        return Path(p)
    st = _stat(p)
    if st is not None:
        for i in inputs:
            if _same_file(st, i):
                raise UsageError(
                    f"{what} {p}: is also an input of this command ({os.fspath(i)}); "
                    f"writing it would destroy what was read"
                )
        if _is_stdout(st) or stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            if not stream_ok:
                raise UsageError(f"{what} {p}: is a device or pipe, expected a regular file")
            return Path(p)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{what} {p}: is a directory, expected a file name")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{what} {p}: exists and is not a regular file")
        if not exists_ok:
            raise UsageError(f"{what} {p}: exists")
    elif os.path.lexists(p) and not os.path.islink(p):
        raise UsageError(f"{what} {p}: cannot be examined")
    target = resolve(p)
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{what} {p}: directory {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"{what} {p}: cannot write in {parent} ({e.strerror or e})") from None
    if st is not None and (read_only(st) or not os.access(target, os.W_OK)):
        raise UsageError(f"{what} {p}: the file is read-only; make it writable to replace it")
    return target


def check_writable(path: str | os.PathLike, what: str, *, exists_ok: bool = True) -> Path:
    """:func:`check_output` for a regular file only (a checkpoint, a plot)."""
    return check_output(path, what, exists_ok=exists_ok)


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
def _temporary(target: Path, mode: int | None) -> Iterator[tuple[IO[bytes], Path]]:
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    # O_EXCL: a symlink planted at the temporary name is never followed
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else 0o600)
    f = os.fdopen(fd, "wb")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        yield f, tmp
    except BaseException:
        f.close()
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(
    path: str | os.PathLike, write: Callable[[IO[bytes]], object], what: str = "output"
) -> Path:
    """Call ``write(f)`` on a temporary binary file, then put it in place of ``path``.

    Only a regular file (or a new name) is replaced; a device, a directory or a read-only
    file is refused with a :class:`UsageError` naming ``what``.  On any error (a full disk
    included) the temporary file is removed and ``path`` is left as it was.  Returns the file
    written (``path`` with symlinks followed).
    """
    if os.fspath(path) == "":
        raise UsageError(f"{what}: the path is empty")
    target = resolve(path)
    st = _stat(target)
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UsageError(f"{what} {os.fspath(path)}: is {kind}; it is never replaced")
        if read_only(st):
            raise UsageError(f"{what} {os.fspath(path)}: the file is read-only")
    remove_orphans(target)
    with _temporary(target, None if st is None else stat.S_IMODE(st.st_mode)) as (f, tmp):
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


def write_output(path: str | os.PathLike, data: bytes, what: str = "output") -> None:
    """Write a command's result to ``path`` as :func:`check_output` admitted it: standard
    output and devices/FIFOs as a stream, anything else through :func:`write_atomic`."""
    p = os.fspath(path)
    st = None if p == STDOUT else _stat(p)
    if p == STDOUT or _is_stdout(st):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        # no O_CREAT, no O_TRUNC: the node is written into, never made or replaced
        fd = os.open(p, os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return
    write_atomic(p, lambda f: f.write(data), what)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`write_atomic` for a ready ``bytes`` payload (documents, JSON)."""
    return write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """:func:`write_atomic` for text (a LaTeX or Markdown document)."""
    return write_bytes_atomic(path, text.encode(encoding))
