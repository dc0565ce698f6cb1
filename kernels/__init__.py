"""derivgrad's numeric core: batched forward and backward kernels on NumPy arrays.

Layout NCHW, PyTorch's conventions (see each function).  Every public function validates
its arguments in Python before compiled code runs.  Imports NumPy, Numba, SciPy's BLAS
(through Numba) and threadpoolctl; never the rest of derivgrad.
"""

from . import _threads
from ._geometry import output_size, window_span
from ._threads import blas_info, get_threads, set_threads, thread_settings
from .activation import (
    relu_backward,
    relu_forward,
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from .batchnorm import BatchNormCache, batchnorm2d_backward, batchnorm2d_forward
from .conv import conv1d_backward, conv1d_forward, conv2d_backward, conv2d_forward
from .im2col import col2im, im2col
from .linear import linear_backward, linear_forward
from .optim import adam_update, sgd_update
from .pool import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward

_threads.start()  # the thread pool, its workers sleeping when idle (see _threads.start_pool)

__all__ = [
    "conv2d_forward",
    "conv2d_backward",
    "conv1d_forward",
    "conv1d_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_backward",
    "linear_forward",
    "linear_backward",
    "relu_forward",
    "relu_backward",
    "softmax",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "batchnorm2d_forward",
    "batchnorm2d_backward",
    "BatchNormCache",
    "im2col",
    "col2im",
    "output_size",
    "window_span",
    "sgd_update",
    "adam_update",
    "set_threads",
    "get_threads",
    "blas_info",
    "thread_settings",
]
