"""CIFAR-10's python batches (``cifar-10-batches-py``: ``data_batch_1`` .. ``data_batch_5``
and ``test_batch``), read by the MNIST pickle's restricted unpickler (NumPy arrays, dicts,
lists and numbers only: no object of any other class is ever made), each batch validated:
``data`` uint8 rows of 3072 pixels (3 x 32 x 32, channels first), ``labels`` 0-9."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .data import _ArraysOnly, _read_bytes

TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = "test_batch"


def is_cifar_dir(path: Any) -> bool:
    return path is not None and Path(path).is_dir() and (Path(path) / TEST).is_file()


def _batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _ArraysOnly(io.BytesIO(_read_bytes(path)), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a loadable CIFAR-10 batch ({e})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a dict of data and labels, got {type(d).__name__}")
    d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataError(f"{path}: expected the keys data and labels")
    x = d["data"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        what = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{path}: data must be uint8 rows of 3072 pixels, got {what}")
    labels = d["labels"]
    if not isinstance(labels, (list, np.ndarray)) or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels
    ):
        raise DataError(f"{path}: labels must be a list of integers")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(x):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    if len(y) == 0:
        raise DataError(f"{path}: no images")
    if y.min() < 0 or y.max() > 9:
        raise DataError(f"{path}: label {int(y.max() if y.max() > 9 else y.min())} is not 0-9")
    return x.reshape(-1, 3, 32, 32), y


def _scaled(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / np.float32(255.0)).astype(np.float32)


def load_cifar(directory: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: float32 (N, 3, 32, 32) in [0, 1], int64 labels;
    the training batches present, in order (at least ``data_batch_1``)."""
    d = Path(directory)
    present = [d / n for n in TRAIN if (d / n).is_file()]
    if not present or present[0].name != TRAIN[0]:
        raise DataError(f"{d}: a CIFAR-10 directory needs data_batch_1 (found {TEST} only)")
    parts = [_batch(p) for p in present]
    xt, yt = _batch(d / TEST)
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return _scaled(x), y, _scaled(xt), yt
