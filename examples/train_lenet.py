"""Train the course LeNet on MNIST with derivgrad's kernels and plot the curves.

    python examples/train_lenet.py [--data DIR] [--epochs 3] [--out DIR]

Without --data it uses the MNIST subset shipped inside the package.
"""

import argparse
from pathlib import Path

from derivgrad.training.train import config, plot, train

ap = argparse.ArgumentParser()
ap.add_argument("--data", help="directory with the four MNIST IDX files")
ap.add_argument("--epochs", type=int, default=2)
ap.add_argument("--limit", type=int, default=4000, help="training images to use (0: all)")
ap.add_argument("--out", default=".")
a = ap.parse_args()
out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)

# SGD with momentum, the setting the course compares with PyTorch
cfg = config(
    data=a.data,
    epochs=a.epochs,
    limit=a.limit or None,
    lr=0.01,
    momentum=0.9,
    checkpoint=str(out / "lenet.npz"),
    overwrite=True,
)
metrics, net = train(cfg, progress=False)
plot(metrics["history"], out / "lenet_curves.png")
print(f"test accuracy {100 * metrics['test_acc']:.2f}%; curves in {out / 'lenet_curves.png'}")
