"""Every output path goes through one writer (derivgrad/atomic.py): a regular file replaced
whole or not at all, a device or FIFO written into and never replaced, and nothing else
touched: not a command's own input, not a read-only file, not a side file the user did not
name (issue 31, items 3 and 10)."""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from derivgrad import atomic
from derivgrad.cli import main
from derivgrad.errors import UsageError

KINDS = [
    "regular",
    "regular-0600",
    "read-only",
    "new-name",
    "missing-dir",
    "directory",
    "symlink",
    "fifo",
    "device",
    "input",
    "empty",
]


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: its kind, permission bits and (for files) content."""
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        s = os.lstat(p)
        if stat.S_ISREG(s.st_mode):
            out[str(p.relative_to(root))] = ("file", stat.S_IMODE(s.st_mode), p.read_bytes())
        elif stat.S_ISLNK(s.st_mode):
            out[str(p.relative_to(root))] = ("link", os.readlink(p))
        else:
            out[str(p.relative_to(root))] = (stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode))
    return out


def _make(root: Path, kind: str) -> tuple[str, list[Path]]:
    """A path of ``kind`` under ``root`` and the command's inputs."""
    spec = root / "layer.dg"
    spec.write_bytes(b"the spec this command read")
    old = root / "old.tex"
    old.write_bytes(b"old document")
    if kind == "regular-0600":
        old.chmod(0o600)
    if kind == "read-only":
        old.chmod(0o444)
    if kind in ("regular", "regular-0600", "read-only"):
        return str(old), [spec]
    if kind == "new-name":
        return str(root / "new.tex"), [spec]
    if kind == "missing-dir":
        return str(root / "nodir" / "x.tex"), [spec]
    if kind == "directory":
        (root / "d").mkdir()
        return str(root / "d"), [spec]
    if kind == "symlink":
        (root / "link.tex").symlink_to("old.tex")
        return str(root / "link.tex"), [spec]
    if kind == "fifo":
        os.mkfifo(root / "fifo")
        return str(root / "fifo"), [spec]
    if kind == "device":
        return os.devnull, [spec]
    if kind == "input":
        (root / "alias.dg").symlink_to("layer.dg")  # the same file under another name
        return str(root / "alias.dg"), [spec]
    return "", [spec]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kind=st.sampled_from(KINDS), stream_ok=st.booleans(), data=st.binary(max_size=64))
def test_an_output_path_is_written_as_named_or_refused_with_nothing_touched(
    tmp_path_factory, kind, stream_ok, data
):
    root = tmp_path_factory.mktemp("out")
    path, inputs = _make(root, kind)
    before = _snapshot(root)
    reader = None
    if kind == "fifo":  # a reader, so that opening the FIFO for writing does not block
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    real_replace = os.replace

    def guarded_replace(src, dst):
        # a regression must fail this test, not replace the machine's /dev/null (root may)
        if not Path(os.path.realpath(dst)).is_relative_to(root.resolve()):
            raise AssertionError(f"os.replace onto {dst}, outside the test's directory")
        return real_replace(src, dst)

    try:
        os.replace = guarded_replace
        try:
            atomic.check_output(path, "-o", inputs=inputs, stream_ok=stream_ok)
        except UsageError as e:
            assert "\n" not in str(e) and str(e).startswith("-o")
            assert _snapshot(root) == before
            refused = True
        else:
            atomic.write_output(path, data, "-o")
            refused = False
        if reader is not None and not refused:
            assert os.read(reader, 1 << 16) == data
    finally:
        os.replace = real_replace
        if reader is not None:
            os.close(reader)

    stream = kind in ("fifo", "device")
    should_refuse = kind in ("read-only", "missing-dir", "directory", "input", "empty") or (
        stream and not stream_ok
    )
    assert refused == should_refuse, (kind, stream_ok)
    if kind == "device":
        assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    after = _snapshot(root)
    if refused or stream:
        assert after == before  # a device or FIFO is written into, never replaced
        return
    written = Path(path).resolve()
    name = str(written.relative_to(root))
    assert written.read_bytes() == data
    # only the named file changed, and it kept its permissions
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed == {name}
    if name in before:
        assert after[name][1] == before[name][1]
    if kind == "symlink":
        assert (root / "link.tex").is_symlink()


def test_root_does_not_replace_a_read_only_file_either(tmp_path):
    # judged by mode bits: as root, os.access says yes to everything
    f = tmp_path / "keep.tex"
    f.write_text("keep")
    f.chmod(0o444)
    with pytest.raises(UsageError, match="read-only"):
        atomic.write_atomic(f, lambda fh: fh.write(b"new"))
    assert f.read_text() == "keep"


# the command line ---------------------------------------------------------------------


def _derive(*argv):
    return main(["derive", "relu", "--features", "2", *argv])


def test_derive_refuses_to_write_over_the_spec_it_reads(tmp_path, capsys):
    spec = tmp_path / "layer.dg"
    spec.write_text("y[i] = x[i] * x[i]\n")
    rc = main(["derive", "--define", f"@{spec}", "--shape", "x=3", "-o", str(spec)])
    err = capsys.readouterr().err
    assert rc == 2 and "is also an input" in err and err.count("\n") == 1
    assert spec.read_text() == "y[i] = x[i] * x[i]\n"


def test_derive_refuses_empty_and_read_only_and_keeps_a_private_file_private(tmp_path, capsys):
    assert _derive("-o", "") == 2
    assert "empty" in capsys.readouterr().err
    ro = tmp_path / "ro.tex"
    ro.write_text("mine")
    ro.chmod(0o444)
    assert _derive("-o", str(ro)) == 2
    assert "read-only" in capsys.readouterr().err and ro.read_text() == "mine"
    private = tmp_path / "private.tex"
    private.write_text("old")
    private.chmod(0o600)
    assert _derive("-o", str(private)) in (0, None)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("\\documentclass")


def test_derive_into_dev_null_and_dev_stdout_as_streams(tmp_path, monkeypatch):
    # the same code in this process first, where os.replace is guarded: a regression must
    # fail here rather than let the command replace the machine's /dev/null
    monkeypatch.setattr(os, "replace", lambda s, d: pytest.fail(f"os.replace onto {d}"))
    atomic.check_output(os.devnull, "-o", stream_ok=True)
    atomic.write_output(os.devnull, b"x", "-o")
    monkeypatch.undo()
    dev_null = subprocess.run(
        [sys.executable, "-m", "derivgrad", "derive", "relu", "--features", "2", "-o", os.devnull],
        capture_output=True,
        text=True,
    )
    assert dev_null.returncode == 0, dev_null.stderr
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert not list(Path("/dev").glob(".null.*.tmp"))
    piped = subprocess.run(
        [
            sys.executable,
            "-m",
            "derivgrad",
            "derive",
            "relu",
            "--features",
            "2",
            "-o",
            "/dev/stdout",
        ],
        capture_output=True,
        text=True,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("\\documentclass")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine (pdflatex)")
def test_pdf_writes_the_pdf_only_and_no_side_file(tmp_path, capsys):
    for side in ("thesis.tex", "thesis.aux", "thesis.log"):
        (tmp_path / side).write_text(f"the user's {side}")
    before = _snapshot(tmp_path)
    assert _derive("--pdf", "-o", str(tmp_path / "thesis.pdf")) in (0, None), capsys.readouterr()
    after = _snapshot(tmp_path)
    assert set(after) - set(before) == {"thesis.pdf"}
    assert {k: after[k] for k in before} == before
    assert (tmp_path / "thesis.pdf").read_bytes().startswith(b"%PDF")
    # a --pdf output that would not be the named .pdf is refused, not renamed
    assert _derive("--pdf", "-o", str(tmp_path / "thesis.tex")) == 2
    assert "must end in .pdf" in capsys.readouterr().err
    assert _snapshot(tmp_path) == after


# a fault at any point of the atomic write leaves the old file whole ------------------------


class _FaultyWriter(io.BufferedWriter):
    fail_at = ""

    def write(self, b):  # type: ignore[override]
        if self.fail_at == "write":
            raise OSError(errno.EIO, "Input/output error (injected)")
        return super().write(b)

    def flush(self):
        if self.fail_at == "flush" and not self.closed:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return super().flush()


@pytest.mark.parametrize("fail_at", ["write", "flush", "fsync", "replace"])
def test_a_fault_at_any_step_leaves_the_old_file_whole_and_no_temporary(
    tmp_path, monkeypatch, fail_at
):
    path = tmp_path / "doc.tex"
    path.write_bytes(b"the valid old document")
    real_fdopen, real_fsync, real_replace = os.fdopen, os.fsync, os.replace

    def fdopen(fd, mode="r", *a, **k):
        if "w" not in mode:
            return real_fdopen(fd, mode, *a, **k)
        f = _FaultyWriter(io.FileIO(fd, "w"))
        f.fail_at = fail_at
        return f

    def fsync(fd):
        if fail_at == "fsync" and stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error (injected)")
        return real_fsync(fd)

    def replace(src, dst):
        if fail_at == "replace":
            raise OSError(errno.EXDEV, "Invalid cross-device link (injected)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="injected"):
        atomic.write_atomic(path, lambda f: f.write(b"a new document, still in the buffer"))
    monkeypatch.undo()
    assert path.read_bytes() == b"the valid old document"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.tex"]
