"""Every bad input is refused before compiled code runs, with the right exception type and
a message that names the argument."""

import numpy as np
import pytest

from derivgrad import kernels as K

x4 = np.zeros((2, 3, 6, 6))
w4 = np.zeros((4, 3, 3, 3))
f32 = np.zeros((2, 3, 6, 6), np.float32)

CASES = [
    # (call, exception, words the message must contain)
    (lambda: K.conv2d_forward(np.zeros((3, 6, 6)), w4), ValueError, ["x", "rank 4", "(3, 6, 6)"]),
    (
        lambda: K.conv2d_forward(x4, np.zeros((4, 2, 3, 3))),
        ValueError,
        ["w", "C_in = 3", "(4, 2, 3, 3)"],
    ),
    (lambda: K.conv2d_forward(f32, w4), TypeError, ["w", "float64", "float32"]),
    (lambda: K.conv2d_forward(x4.astype(int), w4), TypeError, ["x", "int64"]),
    (lambda: K.conv2d_forward(x4.astype(bool), w4), TypeError, ["x", "bool"]),
    (lambda: K.conv2d_forward(x4, w4, np.zeros(5)), ValueError, ["b", "(4,)", "(5,)"]),
    (lambda: K.conv2d_forward(x4, w4, stride=0), ValueError, ["stride", ">= 1", "0"]),
    (lambda: K.conv2d_forward(x4, w4, stride=-1), ValueError, ["stride"]),
    (lambda: K.conv2d_forward(x4, w4, stride=1.5), TypeError, ["stride", "int"]),
    (lambda: K.conv2d_forward(x4, w4, stride=float("nan")), TypeError, ["stride"]),
    (lambda: K.conv2d_forward(x4, w4, stride=True), TypeError, ["stride"]),
    (lambda: K.conv2d_forward(x4, w4, padding=-1), ValueError, ["padding", ">= 0"]),
    (lambda: K.conv2d_forward(x4, w4, dilation=(1, 0)), ValueError, ["dilation[1]"]),
    (lambda: K.conv2d_forward(x4, w4, padding=(1, 1, 1)), ValueError, ["padding", "pair"]),
    (lambda: K.conv2d_forward(x4, np.zeros((4, 3, 7, 3))), ValueError, ["window", "H", "7"]),
    (lambda: K.conv2d_forward(x4, w4, dilation=4), ValueError, ["window", "dilation 4"]),
    (lambda: K.conv2d_forward(np.zeros((0, 3, 6, 6)), w4), ValueError, ["x", "empty"]),
    (
        lambda: K.conv2d_backward(np.zeros((2, 4, 3, 4)), x4, w4),
        ValueError,
        ["dy", "(2, 4, 4, 4)", "(2, 4, 3, 4)"],
    ),
    (
        lambda: K.conv2d_backward(np.zeros((2, 4, 4, 4), np.float32), x4, w4),
        TypeError,
        ["dy", "float32"],
    ),
    (lambda: K.conv1d_forward(x4, w4), ValueError, ["x", "rank 3"]),
    (
        lambda: K.conv1d_forward(np.zeros((2, 3, 4)), np.zeros((1, 3, 5))),
        ValueError,
        ["window", "L"],
    ),
    (
        lambda: K.conv1d_forward(np.zeros((2, 3, 4)), np.zeros((1, 3, 2)), stride=(1, 1)),
        ValueError,
        ["stride"],
    ),
    (
        lambda: K.conv1d_backward(np.zeros((2, 1, 9)), np.zeros((2, 3, 4)), np.zeros((1, 3, 2))),
        ValueError,
        ["dy", "L_out"],
    ),
    (lambda: K.maxpool2d_forward(x4, 7), ValueError, ["window", "7"]),
    (lambda: K.maxpool2d_forward(x4, 2, padding=2), ValueError, ["padding", "half"]),
    (lambda: K.maxpool2d_forward(x4, 0), ValueError, ["kernel_size"]),
    (lambda: K.maxpool2d_forward(x4, 2, stride=0), ValueError, ["stride"]),
    (
        lambda: K.maxpool2d_backward(
            np.zeros((2, 3, 3, 3)), np.full((2, 3, 3, 3), 36), (2, 3, 6, 6)
        ),
        ValueError,
        ["indices", "[0, 36)"],
    ),
    (
        lambda: K.maxpool2d_backward(
            np.zeros((2, 3, 3, 3)), np.full((2, 3, 3, 3), -1), (2, 3, 6, 6)
        ),
        ValueError,
        ["indices"],
    ),
    (
        # One bad index among good ones, far outside: counted by the kernel, never followed.
        lambda: K.maxpool2d_backward(
            np.ones((2, 3, 3, 3)),
            np.where(np.arange(54).reshape(2, 3, 3, 3) == 40, 2**62, 0),
            (2, 3, 6, 6),
        ),
        ValueError,
        ["indices", str(2**62)],
    ),
    (
        lambda: K.maxpool2d_backward(np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 3)), (2, 3, 6, 6)),
        TypeError,
        ["indices", "integer"],
    ),
    (
        lambda: K.maxpool2d_backward(
            np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 2), int), (2, 3, 6, 6)
        ),
        ValueError,
        ["indices", "(2, 3, 3, 2)"],
    ),
    (
        lambda: K.maxpool2d_backward(
            np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), int), (2, 4, 6, 6)
        ),
        ValueError,
        ["dy", "(N, C)"],
    ),
    (
        lambda: K.maxpool2d_backward(
            np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), int), (2, 3, 6)
        ),
        ValueError,
        ["input_shape"],
    ),
    (
        lambda: K.avgpool2d_backward(np.zeros((2, 3, 2, 3)), (2, 3, 6, 6), 2),
        ValueError,
        ["dy", "(2, 3, 3, 3)"],
    ),
    (
        lambda: K.linear_forward(np.zeros((2, 5)), np.zeros((3, 4))),
        ValueError,
        ["w", "in_features = 5"],
    ),
    (lambda: K.linear_forward(np.zeros(5), np.zeros((3, 5))), ValueError, ["x", "rank 2"]),
    (
        lambda: K.linear_backward(np.zeros((2, 4)), np.zeros((2, 5)), np.zeros((3, 5))),
        ValueError,
        ["dy", "(2, 3)"],
    ),
    (lambda: K.relu_backward(np.zeros(3), np.zeros(4)), ValueError, ["dy", "(4,)"]),
    (lambda: K.softmax(np.zeros((2, 0))), ValueError, ["z", "empty"]),
    (
        lambda: K.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, 3])),
        ValueError,
        ["labels", "[0, 3)", "3"],
    ),
    (
        lambda: K.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0, -1])),
        ValueError,
        ["labels", "-1"],
    ),
    (
        lambda: K.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0])),
        ValueError,
        ["labels", "(2,)"],
    ),
    (
        lambda: K.softmax_cross_entropy_forward(np.zeros((2, 3)), np.array([0.0, 1.0])),
        TypeError,
        ["labels", "integer"],
    ),
    (lambda: K.softmax_cross_entropy_backward(np.zeros((2, 3)), None), TypeError, ["labels"]),
    (lambda: K.batchnorm2d_forward(x4, np.ones(2), np.zeros(3)), ValueError, ["gamma", "(3,)"]),
    (lambda: K.batchnorm2d_forward(x4, np.ones(3), np.zeros(3), eps=0), ValueError, ["eps"]),
    (
        lambda: K.batchnorm2d_forward(x4, np.ones(3), np.zeros(3), momentum=2),
        ValueError,
        ["momentum"],
    ),
    (
        lambda: K.batchnorm2d_forward(x4, np.ones(3), np.zeros(3), training=False),
        ValueError,
        ["running_mean"],
    ),
    (
        lambda: K.batchnorm2d_forward(x4, np.ones(3), np.zeros(3), running_mean=np.zeros(3)),
        ValueError,
        ["running_var"],
    ),
    (
        lambda: K.batchnorm2d_forward(np.zeros((1, 3, 1, 1)), np.ones(3), np.zeros(3)),
        ValueError,
        ["more than one value"],
    ),
    (
        lambda: K.batchnorm2d_forward(
            x4,
            np.ones(3),
            np.zeros(3),
            running_mean=np.zeros(3, np.float32),
            running_var=np.ones(3),
        ),
        TypeError,
        ["running_mean", "float32"],
    ),
    (
        lambda: K.batchnorm2d_backward(np.zeros((2, 3, 6, 6)), ("not", "a cache")),
        TypeError,
        ["cache"],
    ),
    (lambda: K.im2col(x4, 7), ValueError, ["window"]),
    (lambda: K.col2im(np.zeros((2, 27, 17)), (2, 3, 6, 6), 3), ValueError, ["cols", "(2, 27, 16)"]),
    (lambda: K.col2im(np.zeros((2, 27, 16)), (2, 3, 6), 3), ValueError, ["input_shape"]),
]


@pytest.mark.parametrize("call,exc,words", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_input_is_refused_with_a_named_message(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"message {msg!r} lacks {w!r}"


def test_readonly_running_stats_are_refused_in_training():
    rm, rv = np.zeros(3), np.ones(3)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean.*read-only"):
        K.batchnorm2d_forward(x4, np.ones(3), np.zeros(3), running_mean=rm, running_var=rv)


def test_refused_calls_leave_inputs_untouched():
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError):
        K.batchnorm2d_forward(
            np.zeros((1, 3, 1, 1)), np.ones(3), np.zeros(3), running_mean=rm, running_var=rv
        )
    assert (rm == 0).all() and (rv == 1).all()
