"""``derivgrad predict``: classify images with a trained checkpoint."""

import argparse
import json

from ..errors import UsageError


def _load_images(paths):
    import numpy as np

    from ..data import read_idx

    out = []
    for path in paths:
        if path.endswith(".npy"):
            a = np.load(path, allow_pickle=False)
        elif path.endswith(".png"):
            import matplotlib.image

            a = matplotlib.image.imread(path)
            a = a[..., :3].mean(-1) if a.ndim == 3 else a
            a = (
                (np.asarray(a, np.float64) * (255 if a.max() <= 1 else 1))
                .round()
                .clip(0, 255)
                .astype(np.uint8)
            )
        else:
            a = read_idx(path, 3)
        a = a.reshape((-1, 28, 28)) if a.size % 784 == 0 else None
        if a is None:
            raise UsageError(f"{path}: expected 28x28 images")
        out.append(a)
    return np.concatenate(out)


def _cmd_predict(a):
    from ..train import predict

    images = _load_images(a.images)
    probs = predict(a.checkpoint, images)
    for i, p in enumerate(probs):
        print(
            json.dumps(dict(index=i, label=int(p.argmax()), probability=round(float(p.max()), 4)))
        )


def register(sub: argparse._SubParsersAction, full: bool = True) -> None:
    p = sub.add_parser("predict", help="classify images with a trained checkpoint")
    p.add_argument("checkpoint")
    p.add_argument(
        "images", nargs="+", help=".npy arrays (N x 28 x 28), PNG files or an IDX image file"
    )
    p.set_defaults(func=_cmd_predict)
