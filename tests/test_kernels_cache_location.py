"""Where compiled kernels go when Numba's own places cannot be written (issue 31, item 8).

Numba caches beside the sources (``__pycache__``) or under ``$HOME``.  A root-owned install
run with an unwritable HOME made ``import derivgrad.kernels`` (and so ``derivgrad --help``)
fail with "no locator available".  As root, permissions do not stop writes, so these tests
make the places unwritable in a way root cannot get around: a regular file where a directory
would go (the package's ``__pycache__``, the home directory's parent)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from derivgrad.kernels import _cache

ROOT = Path(__file__).resolve().parents[1]
RUN_RELU = (
    "import numpy as np, derivgrad.kernels as k, derivgrad.kernels._cache as c;"
    "print(k.relu_forward(np.array([-1.0, 2.0])).tolist(), c.LOCATION)"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A copy of the package whose every ``__pycache__`` is a regular file."""
    src = tmp_path_factory.mktemp("install")
    for pkg in ("derivgrad", "kernels"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for d in [p for p in src.rglob("*") if p.is_dir()]:
        (d / "__pycache__").write_text("")
    return src


def _run(src: Path, tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    (tmp / "home_is_a_file").write_text("")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "DERIVGRAD_"))}
    base.pop("XDG_CACHE_HOME", None)
    base.update(
        HOME=str(tmp / "home_is_a_file" / "home"),
        DERIVGRAD_NO_WARM="1",
        PYTHONDONTWRITEBYTECODE="1",
        **env,
    )
    return subprocess.run(
        [sys.executable, *args], cwd=src, env=base, capture_output=True, text=True, timeout=300
    )


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_help_works_without_a_writable_home_and_says_where_kernels_go(installed, tmp_path):
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    r = _run(installed, tmp_path, "-m", "derivgrad", "--help", TMPDIR=str(tmpdir))
    assert r.returncode == 0, r.stderr
    place = tmpdir / f"derivgrad-numba-{os.geteuid()}"
    assert _warnings(r.stderr) == [
        "derivgrad: warning: neither the package nor the home directory can hold compiled "
        f"kernels; caching them in {place}"
    ]
    ordinary = subprocess.run(
        [sys.executable, "-m", "derivgrad", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DERIVGRAD_NO_WARM": "1"},
    )
    assert r.stdout == ordinary.stdout  # nothing else changes
    assert place.is_dir() and (place.stat().st_mode & 0o777) == 0o700


def test_derivgrad_cache_dir_comes_first_and_kernels_are_cached_there(installed, tmp_path):
    mine = tmp_path / "mine"
    r = _run(installed, tmp_path, "-c", RUN_RELU, DERIVGRAD_CACHE_DIR=str(mine))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["[0.0,", "2.0]"]
    assert r.stdout.split()[2] == str(mine / "numba")
    assert len(_warnings(r.stderr)) == 1 and str(mine / "numba") in r.stderr
    assert list((mine / "numba").rglob("*.nbi")), "the compiled kernel was not cached"


def test_with_no_usable_directory_kernels_compile_in_memory(installed, tmp_path):
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    # the private temporary directory's name taken by a file, and the chosen one unusable
    (tmpdir / f"derivgrad-numba-{os.geteuid()}").write_text("planted")
    (tmp_path / "cache_is_a_file").write_text("")
    r = _run(
        installed,
        tmp_path,
        "-c",
        RUN_RELU,
        TMPDIR=str(tmpdir),
        DERIVGRAD_CACHE_DIR=str(tmp_path / "cache_is_a_file"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[0.0,", "2.0]", "None"]
    (line,) = _warnings(r.stderr)
    assert line.startswith("derivgrad: warning: no directory can hold compiled kernels")
    assert line.endswith("compiling them in every process")


def test_a_directory_others_can_write_to_is_not_trusted(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    assert _cache.untrusted(d) is None
    d.chmod(0o777)
    assert _cache.untrusted(d) == "other users can write to it"
    d.chmod(0o1777)  # sticky (like /tmp): others still create files, so still refused
    assert _cache.untrusted(d) == "other users can write to it"
    d.chmod(0o770)  # the user's own, group-writable: trusted as ssh does for the owner
    assert _cache.untrusted(d) is None
    f = tmp_path / "file"
    f.write_text("")
    assert _cache.untrusted(f) == "it is not a directory"


def test_a_temporary_directory_another_user_made_is_not_used(tmp_path, monkeypatch):
    # the private directory's name is predictable: another user may have made it first
    place = tmp_path / f"derivgrad-numba-{os.geteuid()}"
    place.mkdir(mode=0o700)
    os.chown(place, 65534, 65534)
    monkeypatch.setattr(_cache, "_numba_defaults_work", lambda: False)
    monkeypatch.setattr(_cache.tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("DERIVGRAD_CACHE_DIR", raising=False)
    path, warning = _cache.choose_location()
    assert path is None and f"{place} (another user owns it)" in warning
    os.chown(place, os.geteuid(), os.getegid())
    place.chmod(0o755)
    path, warning = _cache.choose_location()
    assert path == str(place) and (place.stat().st_mode & 0o777) == 0o700
