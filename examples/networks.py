"""Networks of one's own for ``derivgrad train --model examples/networks.py[:name]`` and
``derivgrad check --model ...`` (each function returns a fresh network of derivgrad.nn)."""

import derivgrad
from derivgrad import nn

# a depthwise 3x3 convolution in index notation: one filter per channel
depthwise = derivgrad.define(
    "y[n, c, i, j] += x[n, c, i + u, j + v] * w[c, u, v]", x=(2, 4, 6, 6), w=(4, 3, 3)
)


def model():
    """The issue's block: conv, batch norm, a residual depthwise layer, pool, classifier."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Pad2d(1), nn.Defined(depthwise, w=(16, 3, 3)), nn.ReLU())),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 14 * 14, 10),
    )


def skip():
    """A skip connection around two convolutions that keep the size (y = F(x) + x)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Residual(
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        ),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 14 * 14, 10),
    )


def lenet_batchnorm():
    """The course LeNet with batch norm, layer for layer ``derivgrad train --batchnorm``."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.BatchNorm2d(20),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(20 * 12 * 12, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )
