"""The kernels against PyTorch's CPU implementation, where PyTorch is installed (an
independent oracle; the core suite stands without it)."""

import numpy as np
import pytest
from hypothesis import given
from strategies_kernels import arrays, conv2d_config, pool_config
from tolerances import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional
from derivgrad import kernels as K  # noqa: E402


def _t(a, grad=True):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


@given(conv2d_config())
def test_conv2d_vs_torch(cfg):
    x, w, b = arrays(cfg["seed"], np.float64, cfg["shape_x"], cfg["shape_w"], cfg["shape_w"][:1])
    hp = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    xt, wt, bt = _t(x), _t(w), _t(b)
    yt = F.conv2d(xt, wt, bt, **hp)
    (dy,) = arrays(cfg["seed"] + 1, np.float64, tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    assert_close(K.conv2d_forward(x, w, b, **hp), yt.detach().numpy(), np.float64, "y")
    for got, ref in zip(K.conv2d_backward(dy, x, w, **hp), (xt.grad, wt.grad, bt.grad)):
        assert_close(got, ref.numpy(), np.float64)


@given(pool_config())
def test_pooling_vs_torch(cfg):
    (x,) = arrays(cfg["seed"], np.float64, cfg["shape"], distinct_values=True)
    hp = dict(kernel_size=cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"])
    xt = _t(x)
    yt, it = F.max_pool2d(xt, **hp, return_indices=True)
    (dy,) = arrays(cfg["seed"] + 1, np.float64, tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    y, idx = K.maxpool2d_forward(x, **hp)
    assert_close(y, yt.detach().numpy(), np.float64)
    assert np.array_equal(idx, it.numpy())
    assert_close(K.maxpool2d_backward(dy, idx, x.shape), xt.grad.numpy(), np.float64)
    xt = _t(x)
    yt = F.avg_pool2d(xt, **hp, count_include_pad=True)
    yt.backward(torch.tensor(dy))
    assert_close(K.avgpool2d_forward(x, **hp), yt.detach().numpy(), np.float64)
    assert_close(K.avgpool2d_backward(dy, x.shape, **hp), xt.grad.numpy(), np.float64)


def test_batchnorm_and_cross_entropy_vs_torch():
    rng = np.random.default_rng(0)
    x, g, b = rng.standard_normal((4, 3, 5, 2)), rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = np.zeros(3), np.ones(3)
    y, cache = K.batchnorm2d_forward(x, g, b, 1e-5, True, rm, rv, 0.1)
    xt, gt, bt = _t(x), _t(g), _t(b)
    rmt, rvt = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    yt = F.batch_norm(xt, rmt, rvt, gt, bt, True, 0.1, 1e-5)
    dy = rng.standard_normal(x.shape)
    yt.backward(torch.tensor(dy))
    assert_close(y, yt.detach().numpy(), np.float64)
    assert_close(rm, rmt.numpy(), np.float64)
    assert_close(rv, rvt.numpy(), np.float64)
    for got, ref in zip(K.batchnorm2d_backward(dy, cache), (xt.grad, gt.grad, bt.grad)):
        assert_close(got, ref.numpy(), np.float64)
    z, lab = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    zt = _t(z)
    lt = F.cross_entropy(zt, torch.tensor(lab))
    lt.backward()
    loss, p = K.softmax_cross_entropy_forward(z, lab)
    assert abs(loss - lt.item()) < 1e-12
    assert_close(K.softmax_cross_entropy_backward(p, lab), zt.grad.numpy(), np.float64)
