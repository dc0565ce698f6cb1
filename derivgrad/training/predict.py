"""Classifying images with a trained checkpoint (``derivgrad predict``).

Images must already be 28×28 (nothing is reshaped or resized behind the user's back), with
uint8 pixels 0–255, integer pixels 0–255 or float pixels in [0, 1], all finite.  They are
classified :data:`BATCH` at a time, so memory stays bounded by the batch, not the input.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import CheckpointError, DataError
from . import checkpoint as ckpt
from .config import TrainConfig
from .data import prepare
from .model import Sequential
from .state import architecture, build, parse_meta, restore, specs_of

BATCH = 1000


def load_network(
    path: str | os.PathLike, model: str | None = None
) -> tuple[Sequential, TrainConfig]:
    """The network stored in a checkpoint, and the configuration it was trained with.

    A checkpoint of a ``--model`` network records its layers but never the code to run:
    ``model`` names the file (``net.py[:func]``) to build it from, and the network it builds
    must be the one recorded, layer for layer."""
    where = os.fspath(path)
    held: dict = {}

    def expect(meta: dict) -> dict[str, ckpt.ArraySpec]:
        s = parse_meta(meta, where)
        cfg = s.config
        if cfg.model is not None and model is None:
            raise CheckpointError(
                f"{where}: a checkpoint of a --model network ({cfg.model}); pass --model with "
                f"the file it was trained with (a checkpoint never names code to run)"
            )
        if cfg.model is None and model is not None:
            raise CheckpointError(f"{where}: a checkpoint of the LeNet; leave out --model")
        if model is not None:
            cfg = cfg.replace(model=model)
        held["net"], held["opt"] = build(cfg, seed=0)
        if model is not None:
            mine, saved = architecture(held["net"]), s.config.architecture or ()
            if mine != saved:
                i = next((i for i, (a, b) in enumerate(zip(saved, mine)) if a != b), None)
                i = min(len(saved), len(mine)) if i is None else i
                has = lambda rows: rows[i] if i < len(rows) else "no layer"  # noqa: E731
                raise CheckpointError(
                    f"{where}: --model {model} is another network: its layer {i + 1} is "
                    f"{has(mine)!r}, the checkpoint's {has(saved)!r}"
                )
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


def predict(
    checkpoint_path: str | os.PathLike, images: object, model: str | None = None
) -> np.ndarray:
    """Class probabilities ``(N, classes)`` for images ``(N, 28, 28)`` (see
    :func:`as_images`); ``model``: the file of a ``--model`` checkpoint's network."""
    return predict_pixels(checkpoint_path, as_images(images), model)


def predict_pixels(
    checkpoint_path: str | os.PathLike, x8: np.ndarray, model: str | None = None
) -> np.ndarray:
    """:func:`predict` for pixels :func:`as_images` has already put on the 0..255 scale
    (validating them twice would read scaled floats as out-of-range [0, 1] pixels)."""
    from derivgrad.kernels import softmax

    net, cfg = load_network(checkpoint_path, model)
    parts = [
        softmax(net.forward(prepare(x8[i : i + BATCH], cfg.normalize)))
        for i in range(0, len(x8), BATCH)
    ]
    return np.concatenate(parts).astype(np.float32, copy=False)
