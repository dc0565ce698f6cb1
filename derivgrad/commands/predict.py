"""``derivgrad predict``: classify images with a trained checkpoint."""

from __future__ import annotations

import argparse
import json
import os
import stat

from ..errors import DataError

MAX_IMAGES = 1_000_000  # 784 MB of uint8 pixels


def _regular(path: str) -> int:
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataError(f"{path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise DataError(f"{path}: empty file")
    return st.st_size


def _png(path: str):
    """A 28x28 PNG as uint8 gray pixels (colour averaged); the size is read from the header
    before anything is decoded."""
    import numpy as np

    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DataError(f"{path}: not a PNG file")
    w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if (h, w) != (28, 28):
        raise DataError(f"{path}: image is {w}x{h} pixels; expected 28x28 (resize it first)")
    import matplotlib.image

    try:
        a = matplotlib.image.imread(path)
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: unreadable PNG ({e})") from None
    if a.ndim == 3:  # RGB(A) -> gray, the mean of the colour channels
        a = a[..., :3].mean(-1)
    if a.dtype.kind == "f":
        return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
    return a.astype(np.uint8)


def _npy(path: str):
    import numpy as np

    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            fmt = np.lib.format
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path}: not a .npy file ({e})") from None
    if len(shape) not in (2, 3) or tuple(shape[-2:]) != (28, 28):
        raise DataError(f"{path}: array of shape {shape}; expected (N, 28, 28) or (28, 28)")
    if len(shape) == 3 and shape[0] > MAX_IMAGES:
        raise DataError(f"{path}: {shape[0]} images, more than the {MAX_IMAGES:,d} limit")
    if dtype.hasobject:
        raise DataError(f"{path}: object arrays are not accepted")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: unreadable .npy ({e})") from None


def _load_images(paths: list[str]):
    """Each file's images on the 0..255 scale, validated and named by their file."""
    from ..training.data import read_idx
    from ..training.predict import as_images

    out = []
    for path in paths:
        _regular(path)
        if path.lower().endswith(".npy"):
            a = _npy(path)
        elif path.lower().endswith(".png"):
            a = _png(path)
        else:
            a = read_idx(path, 3)
        out.append(as_images(a, path))
    return out


def _cmd_predict(a: argparse.Namespace) -> None:
    import numpy as np

    from ..training.predict import predict_pixels

    parts = _load_images(a.images)
    # float files arrive as float32 on the 0..255 scale, uint8 ones as uint8: one dtype
    dtype = np.float32 if any(p.dtype != np.uint8 for p in parts) else np.uint8
    probs = predict_pixels(a.checkpoint, np.concatenate([p.astype(dtype) for p in parts]), a.model)
    start = 0
    for path, part in zip(a.images, parts):
        for i, p in enumerate(probs[start : start + len(part)]):
            rec = dict(
                file=path, index=i, label=int(p.argmax()), probability=round(float(p.max()), 4)
            )
            print(json.dumps(rec, allow_nan=False))
        start += len(part)


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    p = sub.add_parser(
        "predict",
        help="classify images with a trained checkpoint",
        description="Prints one JSON line per image: its file, its index within that file, "
        "the predicted label and its probability.",
    )
    p.add_argument("checkpoint")
    p.add_argument(
        "images",
        nargs="+",
        help="28x28 images: .npy arrays (N x 28 x 28), PNG files (colour averaged to gray) "
        "or an IDX image file",
    )
    p.add_argument(
        "--model",
        metavar="FILE[:FUNC]",
        help="the network file a --model checkpoint was trained with (it must build the "
        "network the checkpoint records)",
    )
    p.set_defaults(func=_cmd_predict)
