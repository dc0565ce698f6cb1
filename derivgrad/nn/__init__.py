"""Networks of one's own: built-in layers and layers written in index notation
(:class:`Defined`), trained on the kernels (:mod:`derivgrad.kernels` and each defined op's
generated ones).

    net = nn.build(model(), (1, 28, 28), seed=0)      # shapes checked here
    opt = nn.SGD(net.named_params(), lr=0.05, momentum=0.9)
    loss, probs = net.loss_and_grads(x, labels); opt.step(net.named_grads())
"""

from ..training.model import SGD, Adam
from .defined import Defined
from .layers import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    Pad2d,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
)
from .losses import softmax_cross_entropy, squared_error
from .network import Network, build

__all__ = [
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Defined",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "Module",
    "Pad2d",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "softmax_cross_entropy",
    "squared_error",
    "SGD",
    "Adam",
    "Network",
    "build",
]
