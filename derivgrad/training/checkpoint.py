"""Checkpoints: one ``.npz`` holding parameters, buffers, optimizer state, the position in
training and the configuration, written atomically (:mod:`derivgrad.atomic`), so a kill at
any moment leaves either the old checkpoint or the new one, never a torn file.

Reading is defensive: a checkpoint is a file a user can hand us from anywhere.  The size of
every member is checked against what the metadata says it must be *before* it is read (a
member cannot claim gigabytes), members are never unpickled, an unexpected member is
refused, and each array must have exactly the expected shape and dtype (no silent cast of a
tampered ``int8`` or string array).
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from ..errors import CheckpointError

MAX_META_BYTES = 16 * 2**20
_NPY_HEADER = 4096  # generous bound on an .npy member's header


@dataclass(frozen=True)
class ArraySpec:
    """The shape and dtype a checkpoint member must have."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


Expect = Callable[[dict], Mapping[str, ArraySpec]]


def save(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: dict) -> Path:
    """Write ``arrays`` and the JSON-able ``meta`` to ``path`` atomically; returns the file
    written (a symlink's target: the link itself is kept)."""
    payload = {f"a/{k}": v for k, v in arrays.items()}
    payload["meta"] = np.frombuffer(json.dumps(meta, allow_nan=False).encode(), dtype=np.uint8)
    return write_atomic(path, lambda f: np.savez(f, **payload), "--checkpoint")  # type: ignore[arg-type]


def _open(path: Path) -> zipfile.ZipFile:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a derivgrad checkpoint")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable derivgrad checkpoint ({e})") from None


def _read_member(zf: zipfile.ZipFile, path: Path, name: str, limit: int) -> np.ndarray:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise CheckpointError(f"{path}: member {name} missing") from None
    if info.file_size > limit:
        raise CheckpointError(
            f"{path}: member {name} claims {info.file_size:,d} bytes, more than the "
            f"{limit:,d} it can need"
        )
    try:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: member {name} unreadable ({e})") from None


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata dict alone (no array is read)."""
    path = Path(path)
    with _open(path) as zf:
        return _meta(zf, path)


def _meta(zf: zipfile.ZipFile, path: Path) -> dict:
    raw = _read_member(zf, path, "meta.npy", MAX_META_BYTES + _NPY_HEADER)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: metadata is not a byte string")
    try:
        meta = json.loads(bytes(raw).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: metadata is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata is not a JSON object")
    return meta


def load(path: str | os.PathLike, expect: Expect) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, meta)`` of a checkpoint.

    ``expect(meta)`` returns ``{name: ArraySpec}``, every array the checkpoint must hold
    (it raises :class:`CheckpointError` for metadata it cannot accept).  Members beyond
    those, missing ones, and ones of another shape or dtype are refused; a member's size is
    checked before it is read.
    """
    path = Path(path)
    with _open(path) as zf:
        meta = _meta(zf, path)
        spec = dict(expect(meta))
        names = {n for n in zf.namelist()} - {"meta.npy"}
        wanted = {f"a/{k}.npy": k for k in spec}
        extra = sorted(names - set(wanted))
        if extra:
            raise CheckpointError(f"{path}: unexpected member(s) {', '.join(extra[:5])}")
        arrays = {}
        for member, k in wanted.items():
            s = spec[k]
            a = _read_member(zf, path, member, s.nbytes + _NPY_HEADER)
            if a.shape != tuple(s.shape) or a.dtype != s.dtype:
                raise CheckpointError(
                    f"{path}: {k} is {a.dtype} {a.shape}, expected {np.dtype(s.dtype)} "
                    f"{tuple(s.shape)}"
                )
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise CheckpointError(f"{path}: {k} holds NaN or infinite values")
            arrays[k] = a
    return arrays, meta
