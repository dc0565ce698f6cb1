"""Classifying images with a trained checkpoint (``derivgrad predict``).

Images must already be 28×28 (nothing is reshaped or resized behind the user's back), with
uint8 pixels 0–255, integer pixels 0–255 or float pixels in [0, 1], all finite.  They are
classified :data:`BATCH` at a time, so memory stays bounded by the batch, not the input.
"""

from __future__ import annotations

import os

import numpy as np

from . import checkpoint as ckpt
from .data import prepare
from .errors import CheckpointError, DataError
from .model import Sequential
from .train_config import TrainConfig
from .train_state import build, parse_meta, restore, specs_of

BATCH = 1000


def load_network(path: str | os.PathLike) -> tuple[Sequential, TrainConfig]:
    """The network stored in a checkpoint, and the configuration it was trained with."""
    where = os.fspath(path)
    held: dict = {}

    def expect(meta: dict) -> dict[str, ckpt.ArraySpec]:
        s = parse_meta(meta, where)
        if s.config.model is not None:  # building it would run the Python file it names
            raise CheckpointError(
                f"{where}: a checkpoint of a --model network ({s.config.model}); predict "
                f"reads only the LeNet's checkpoints for now"
            )
        held["net"], held["opt"] = build(s.config, seed=0)
        held["cfg"], held["steps"] = s.config, s.steps
        return specs_of(held["net"], held["opt"])

    arrays, _ = ckpt.load(path, expect)
    restore(held["net"], held["opt"], arrays, held["steps"])
    return held["net"], held["cfg"]


def as_images(images: object, where: str = "images") -> np.ndarray:
    """``images`` as ``(N, 28, 28)`` pixels on the 0..255 scale (uint8, or float32 for float
    input, which keeps its precision), refusing anything that is not plainly images."""
    if isinstance(images, np.ma.MaskedArray):
        raise DataError(f"{where}: masked arrays are not accepted; fill them first")
    a = np.asarray(images)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise DataError(f"{where}: expected 28x28 images, shape (N, 28, 28); got {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind in "iu":
        if a.size and (a.min() < 0 or a.max() > 255):
            raise DataError(f"{where}: integer pixels must be in 0..255")
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise DataError(f"{where}: NaN or infinite pixel values")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise DataError(
                f"{where}: float pixels must be in [0, 1], got [{a.min():g}, {a.max():g}]; "
                f"pass uint8 for 0..255 data"
            )
        return a.astype(np.float32) * np.float32(255)
    raise DataError(f"{where}: pixel dtype {a.dtype} is not uint8, integer or float")


def predict(checkpoint_path: str | os.PathLike, images: object) -> np.ndarray:
    """Class probabilities ``(N, 10)`` for images ``(N, 28, 28)`` (see :func:`as_images`)."""
    return predict_pixels(checkpoint_path, as_images(images))


def predict_pixels(checkpoint_path: str | os.PathLike, x8: np.ndarray) -> np.ndarray:
    """:func:`predict` for pixels :func:`as_images` has already put on the 0..255 scale
    (validating them twice would read scaled floats as out-of-range [0, 1] pixels)."""
    from derivgrad.kernels import softmax

    net, cfg = load_network(checkpoint_path)
    out = np.empty((len(x8), 10), np.float32)
    for i in range(0, len(x8), BATCH):
        out[i : i + BATCH] = softmax(net.forward(prepare(x8[i : i + BATCH], cfg.normalize)))
    return out
