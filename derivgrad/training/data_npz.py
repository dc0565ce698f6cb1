"""Images of any size from a plain ``.npz``: ``x`` (N, C, H, W) or (N, H, W) and integer
labels ``y``; optionally ``x_test`` and ``y_test``, else the last tenth of ``x`` (at least one
image) is held out for testing, in file order.  Pixels are uint8 on 0..255 (scaled to
[0, 1]) or float (kept).  Read without unpickling (``allow_pickle=False``), within the
MNIST loader's byte limit, every array validated before use."""

from __future__ import annotations

import zipfile
from typing import Any

import numpy as np

from ..errors import DataError
from .data import MAX_BYTES, _regular_file

KNOWN = ("x", "y", "x_test", "y_test")


def is_npz(path: Any) -> bool:
    return path is not None and str(path).lower().endswith(".npz")


def _images(where: str, name: str, a: np.ndarray) -> np.ndarray:
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise DataError(f"{where}: {name} must be N x C x H x W or N x H x W, got shape {a.shape}")
    if a.shape[0] == 0 or 0 in a.shape[1:]:
        raise DataError(f"{where}: {name} holds no images (shape {a.shape})")
    if a.dtype == np.uint8:
        return (a.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    if a.dtype.kind != "f":
        raise DataError(f"{where}: {name} must be uint8 or float pixels, got {a.dtype}")
    x = a.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{where}: {name} holds a value that is not finite (in float32)")
    return x


def _labels(where: str, name: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.dtype.kind not in "iu":
        raise DataError(f"{where}: {name} must be integer labels, got {y.dtype}")
    if y.shape != (n,):
        raise DataError(f"{where}: {n} images but {name} has shape {y.shape}")
    if y.min() < 0:
        raise DataError(f"{where}: {name} holds the label {int(y.min())}; labels are 0, 1, ...")
    return y.astype(np.int64)


def load_npz(path: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: float32 (N, C, H, W) images, int64 labels."""
    where = str(path)
    if _regular_file(path) > MAX_BYTES:
        raise DataError(f"{where}: larger than {MAX_BYTES >> 20} MiB")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            unknown = [k for k in names if k not in KNOWN]
            if unknown or "x" not in names or "y" not in names:
                raise DataError(
                    f"{where}: expected arrays x and y (and optionally x_test, y_test), "
                    f"found {', '.join(names) or 'none'}"
                )
            if ("x_test" in names) != ("y_test" in names):
                raise DataError(f"{where}: x_test and y_test go together")
            total = 0
            for k in names:  # the sizes the headers claim, before anything is inflated
                info = z.zip.getinfo(f"{k}.npy")
                total += info.file_size
            if total > MAX_BYTES:
                raise DataError(f"{where}: its arrays hold more than {MAX_BYTES >> 20} MiB")
            arrays = {k: z[k] for k in names}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as e:
        raise DataError(f"{where}: not a readable .npz of arrays ({e})") from None
    x = _images(where, "x", arrays["x"])
    y = _labels(where, "y", arrays["y"], len(x))
    if "x_test" in arrays:
        xt = _images(where, "x_test", arrays["x_test"])
        yt = _labels(where, "y_test", arrays["y_test"], len(xt))
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{where}: x_test's images are {xt.shape[1:]}, x's are {x.shape[1:]}")
        return x, y, xt, yt
    if len(x) < 2:
        raise DataError(f"{where}: one image: nothing to hold out for testing (give x_test)")
    cut = len(x) - max(1, len(x) // 10)
    return x[:cut], y[:cut], x[cut:], y[cut:]
