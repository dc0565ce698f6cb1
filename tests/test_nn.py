"""derivgrad.nn: networks of one's own, built from the kernels' layers and defined ops.

References held apart from the code under test: NumPy einsum for a defined layer's forward,
central differences (float64) for every gradient, the symbolic truth for defined layers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resume import interrupted_and_resumed

import derivgrad
import derivgrad.training.train as T
from derivgrad import nn
from derivgrad.errors import CheckpointError, ParamError
from derivgrad.nn.check import check_network, failed_layers

DEPTHWISE = "y[n, c, i, j] += x[n, c, i + u, j + v] * w[c, u, v]"
CONV = "y[n, o, i, j] += x[n, c, i + u, j + v] * w[o, c, u, v]"


def depthwise():
    return derivgrad.define(DEPTHWISE, x=(2, 4, 6, 6), w=(4, 3, 3))


def small(op=None):
    """Every layer kind, on a 1x6x6 input."""
    op = op or depthwise()
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Pad2d(1), nn.Defined(op, w=(3, 3, 3)), nn.Sigmoid())),
        nn.AvgPool2d(2),
        nn.MaxPool2d(3, 1),
        nn.Flatten(),
        nn.Linear(3, 4),
    )


def test_the_issue_example_builds_with_its_shapes():
    def model():
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Residual(nn.Sequential(nn.Pad2d(1), nn.Defined(depthwise(), w=(16, 3, 3)),
                                      nn.ReLU())),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 14 * 14, 10))  # fmt: skip

    net = nn.build(model(), (1, 28, 28))
    shapes = [r.shape for r in net.summary()]
    assert shapes == [
        (16, 28, 28), (16, 28, 28), (16, 28, 28), (16, 30, 30), (16, 28, 28), (16, 28, 28),
        (16, 14, 14), (3136,), (10,),
    ]  # fmt: skip
    assert net.n_params() == 16 * 10 + 32 + 16 * 9 + 3136 * 10 + 10
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    assert net.forward(x).shape == (3, 10)


@pytest.mark.parametrize(
    "layers, shape, match",
    [
        ([nn.Conv2d(3, 4, 3)], (1, 8, 8), r"layer 0 \(Conv2d 3->4.*\(3, H, W\).*\(1, 8, 8\)"),
        ([nn.Flatten(), nn.Linear(10, 2)], (1, 3, 3), r"layer 1 \(Linear 10->2\).*\(10,\).*\(9,\)"),
        ([nn.MaxPool2d(4)], (2, 3, 3), r"layer 0 \(MaxPool2d.*4x4.*\(2, 3, 3\)"),
        ([nn.Residual(nn.Conv2d(1, 1, 3))], (1, 5, 5),
         r"layer 0 \(Residual\).*\(1, 5, 5\).*\(1, 3, 3\)"),
        ([nn.Sequential(nn.BatchNorm2d(2))], (3, 4, 4),
         r"layer 0.0 \(BatchNorm2d 2\).*\(3, 4, 4\)"),
    ],
)  # fmt: skip
def test_a_shape_mismatch_names_the_layer_and_both_shapes(layers, shape, match):
    with pytest.raises(ParamError, match=match) as e:
        nn.build(nn.Sequential(*layers), shape)
    assert "\n" not in str(e.value)


def test_a_defined_layer_that_does_not_fit_is_refused_by_name():
    layer = nn.Defined(derivgrad.define(CONV, x=(1, 2, 4, 4), w=(3, 2, 2, 2)), w=(3, 2, 2, 2))
    with pytest.raises(ParamError, match=r"layer 1 \(Defined.*\(5, 4, 4\)"):
        nn.build(nn.Sequential(nn.ReLU(), layer), (5, 4, 4))
    with pytest.raises(ParamError, match="no shape for w"):
        nn.Defined(depthwise())
    with pytest.raises(ParamError, match="no input 'z'"):
        nn.Defined(depthwise(), input="z", w=(1, 1, 1))
    # an op whose output does not follow the batch cannot be a layer
    pooled = derivgrad.define("y[c] += x[n, c]", x=(2, 3))
    with pytest.raises(ParamError, match="batch as its first axis"):
        nn.build(nn.Defined(pooled), (3,))


def test_defined_layer_runs_at_the_network_batch_and_matches_einsum():
    op = derivgrad.define(CONV, x=(1, 2, 4, 4), w=(3, 2, 2, 2))  # example batch 1
    net = nn.build(nn.Sequential(nn.Defined(op, w=(3, 2, 2, 2))), (2, 5, 5), dtype=np.float64)
    w = net.named_params()["0.w"]
    x = np.random.default_rng(1).standard_normal((7, 2, 5, 5))
    win = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))  # n c i j u v
    assert np.allclose(net.forward(x), np.einsum("ncijuv,ocuv->noij", win, w))
    # the stated rule: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C*KH*KW = 8
    bound = 1 / np.sqrt(8)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound


def test_defined_init_choices():
    ones = nn.build(nn.Defined(depthwise(), init="ones", w=(2, 3, 3)), (2, 5, 5))
    assert np.array_equal(ones.named_params()["0.w"], np.ones((2, 3, 3), np.float32))
    f = lambda rng, shape, fan_in: np.full(shape, fan_in)  # noqa: E731
    nine = nn.build(nn.Defined(depthwise(), init=f, w=(2, 3, 3)), (2, 5, 5))
    assert (nine.named_params()["0.w"] == 9).all()  # a depthwise 3x3 sums 9 entries
    with pytest.raises(ParamError, match="init must be"):
        nn.Defined(depthwise(), init="normal", w=(2, 3, 3))


def test_every_gradient_of_a_small_network_matches_central_differences():
    results = check_network(small, (1, 6, 6), batch=3, examples=1)
    assert [r.what for r in results if not r.passed] == []
    kinds = {r.reference for r in results}
    assert kinds == {
        "central differences of the loss", "central differences", "symbolic ground truth"
    }  # fmt: skip
    assert sum(r.what.startswith("layer") for r in results) == 11  # 10 layers + the symbolic


def test_a_wrong_defined_layer_is_named(monkeypatch):
    op = depthwise()
    real = op.backward

    def wrong(dy, **a):  # a planted bug: the weight gradient off by 1 %
        g = real(dy, **a)
        return {**g, "w": g["w"] * 1.01}

    monkeypatch.setattr(op, "backward", wrong)
    results = check_network(lambda: small(op), (1, 6, 6), examples=1)
    bad = failed_layers(results)
    assert any(r.what == "network" and not r.passed for r in results)
    assert bad and all(b.startswith("layer 3.0.1 (Defined") for b in bad)


def test_an_optimizer_step_moves_every_parameter_and_adam_too():
    for make_opt in (lambda p: nn.SGD(p, lr=0.1, momentum=0.9), lambda p: nn.Adam(p, lr=0.01)):
        net = nn.build(small(), (1, 6, 6), seed=2)
        before = {k: v.copy() for k, v in net.named_params().items()}
        opt = make_opt(net.named_params())
        x = np.random.default_rng(0).standard_normal((4, 1, 6, 6)).astype(np.float32)
        net.loss_and_grads(x, np.array([0, 1, 2, 3]))
        opt.step(net.named_grads())
        for k, v in net.named_params().items():
            if k != "0.b":  # a bias before batch norm has gradient 0: the mean is taken out
                assert not np.array_equal(v, before[k]), k


def test_squared_error_loss_gradient():
    rng = np.random.default_rng(0)
    o, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    loss, g = nn.squared_error(o, t)
    e = np.zeros_like(o)
    e[1, 2] = 1e-6
    num = (nn.squared_error(o + e, t)[0] - nn.squared_error(o - e, t)[0]) / 2e-6
    assert np.isclose(g[1, 2], num, rtol=1e-6)
    assert np.isclose(loss, ((o - t) ** 2).sum())


@settings(max_examples=15, deadline=None)
@given(
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    k=st.integers(1, 5),
    stride=st.integers(1, 3),
    pad=st.integers(0, 2),
    pool=st.integers(1, 3),
)
def test_built_shapes_are_the_shapes_forward_makes(c, h, k, stride, pad, pool):
    # the shape check is the class of bug: whatever builds must run with those shapes
    layers = nn.Sequential(
        nn.Pad2d(pad), nn.Conv2d(c, 2, k, stride=stride), nn.AvgPool2d(pool), nn.MaxPool2d(1)
    )
    try:
        net = nn.build(layers, (c, h, h + 1))
    except ParamError:
        assert h + 2 * pad < k or (h + 2 * pad - k) // stride + 1 < pool
        return
    x = np.zeros((2, c, h, h + 1), np.float32)
    for layer, row in zip(net.root.leaves(), net.summary()):
        x = layer.forward(x, False)
        assert x.shape[1:] == row.shape


# -- the command line -----------------------------------------------------------------------
NET = """
import derivgrad
from derivgrad import nn

depthwise = derivgrad.define("{spec}", x=(2, 4, 6, 6), w=(4, 3, 3))


def model():
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Pad2d(1), nn.Defined(depthwise, w=(2, 3, 3)), nn.ReLU())),
        nn.MaxPool2d(4), nn.Flatten(), nn.Linear(2 * 7 * 7, 10))


def other():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


class Doubled(nn.Module):  # a layer of one's own with a planted bug: backward forgets the 2
    def out_shape(self, s):
        return s

    def forward(self, x, train):
        return 2 * x

    def backward(self, dy):
        return dy


def wrong():
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3), Doubled(), nn.Linear(3, 2))


def five():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 5))


def broken():
    return 42
"""


@pytest.fixture
def netfile(tmp_path):
    p = tmp_path / "net.py"
    p.write_text(NET.replace("{spec}", DEPTHWISE))
    return str(p)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "derivgrad", *args], capture_output=True, text=True, timeout=600
    )


def test_check_model_names_a_wrong_layer_of_ones_own(netfile):
    r = _cli("check", "--model", f"{netfile}:wrong", "--input", "1x4x4", "--examples", "1")
    assert r.returncode == 1, r.stderr
    assert "FAIL  network" in r.stdout and "FAIL  layer 2 (Doubled)" in r.stdout
    assert "wrong: layer 2 (Doubled)" in r.stderr
    assert "FAIL  layer 1" not in r.stdout and "FAIL  layer 3" not in r.stdout


@pytest.mark.parametrize(
    "spec, message",
    [
        ("{f}:nothing", "defines no function nothing()"),
        ("{f}:broken", "broken() returned int"),
        ("{d}/missing.py", "no file"),
    ],
)
def test_a_bad_model_is_one_line(netfile, spec, message):
    import os

    arg = spec.format(f=netfile, d=os.path.dirname(netfile))
    r = _cli("check", "--model", arg)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1


def test_train_model_resumes_exactly_and_refuses_another_network(netfile, tmp_path, monkeypatch):
    cfg = dict(model=netfile, epochs=2, limit=256, batch_size=32, seed=1)
    full, net_full = T.train(T.config(**cfg), log=lambda s: None, progress=False)
    assert full["test_acc"] > 0.3  # 10 classes: chance is 0.1

    path = str(tmp_path / "c.npz")
    # interrupted at epoch 2, batch 3 (8 batches per epoch)
    resumed, net_res = interrupted_and_resumed(cfg, 11, path, monkeypatch)
    params = net_full.named_params()
    assert len(params) == 7
    for k, a in params.items():
        assert np.array_equal(a, net_res.named_params()[k]), k
    for k, a in net_full.named_buffers().items():
        assert np.array_equal(a, net_res.named_buffers()[k]), k

    with pytest.raises(CheckpointError, match="another network: its layer 1"):
        T.train(
            T.config(**{**cfg, "model": f"{netfile}:other"}, checkpoint=path, resume=True),
            log=lambda s: None,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="holds a --model network"):
        T.train(
            T.config(epochs=3, limit=256, batch_size=32, seed=1, checkpoint=path, resume=True),
            log=lambda s: None,
            progress=False,
        )
    img = np.random.default_rng(5).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    np.save(tmp_path / "img.npy", img)
    r = _cli("predict", path, str(tmp_path / "img.npy"))
    assert r.returncode == 2 and "--model network" in r.stderr and "pass --model" in r.stderr
    # with the file named by the user (never by the checkpoint): the trained network's output
    from derivgrad.kernels import softmax
    from derivgrad.training.data import prepare
    from derivgrad.training.predict import predict

    want = softmax(net_res.forward(prepare(img, False)))
    assert np.array_equal(predict(path, img, model=netfile), want)
    r = _cli("predict", path, str(tmp_path / "img.npy"), "--model", netfile)
    assert r.returncode == 0, r.stderr
    labels = [json.loads(line)["label"] for line in r.stdout.splitlines()]
    assert labels == [int(v) for v in want.argmax(1)]
    r = _cli("predict", path, str(tmp_path / "img.npy"), "--model", f"{netfile}:other")
    assert r.returncode == 2 and "another network: its layer 1" in r.stderr


def test_train_model_from_the_command_line(netfile, tmp_path):
    r = _cli(
        "train", "--model", f"{netfile}:other", "--limit", "128", "--epochs", "1",
        "--batch-size", "32", "--optimizer", "adam", "--lr", "0.01", "--threads", "1",
        "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "0 Flatten" in r.stderr and "1 Linear 784->10" in r.stderr
    r = _cli("train", "--model", f"{netfile}:wrong", "--limit", "64", "--quiet")
    assert r.returncode == 2 and "layer 1 (Linear 16->3)" in r.stderr and "(784,)" in r.stderr
    r = _cli("train", "--model", f"{netfile}:five", "--limit", "64", "--quiet")
    assert r.returncode == 2 and "(5,)" in r.stderr and "needs (10,) or more" in r.stderr


def test_the_sharded_optimizer_moves_nested_parameters_into_its_buffer():
    # --shard-optimizer hands each parameter back as a view of one flat buffer; a container's
    # params is a fresh dict, so the view must reach the layer that holds the parameter
    from derivgrad.training import distributed as D

    class OneRank:
        rank, size, _buf, sharded = 0, 1, None, None
        _layout_for = D.Communicator._layout_for

    net = nn.build(small(), (1, 6, 6), seed=3)
    x = np.random.default_rng(1).standard_normal((4, 1, 6, 6)).astype(np.float32)
    before = net.forward(x, train=True)
    opt = D.ShardedOptimizer(OneRank(), net, lambda p: nn.SGD(p, 0.1))  # type: ignore[arg-type]
    named = net.named_params()
    assert len(named) == 7 and all(np.shares_memory(v, opt.pbuf) for v in named.values())
    np.testing.assert_array_equal(net.forward(x, train=True), before)
    opt.pbuf[:] = 0  # every weight, bias, gamma, beta: the scores are then 0
    assert not net.forward(x, train=True).any()


EXAMPLES = str(Path(__file__).resolve().parents[1] / "examples" / "networks.py")


def test_the_lenet_written_in_nn_trains_as_the_built_in_lenet_bit_for_bit():
    cfg = dict(epochs=1, limit=192, batch_size=32, seed=4, batchnorm=True)
    _, lenet = T.train(T.config(**cfg), log=lambda s: None, progress=False)
    _, mine = T.train(
        T.config(**cfg, model=f"{EXAMPLES}:lenet_batchnorm"), log=lambda s: None, progress=False
    )
    a, b = lenet.named_params(), mine.named_params()
    assert len(a) == len(b) == 8
    for (k, u), v in zip(a.items(), b.values()):
        assert u.shape == v.shape and np.array_equal(u, v), k


@pytest.mark.parametrize("name", ["model", "skip"])
def test_the_example_networks_train(name):
    m, _ = T.train(
        T.config(model=f"{EXAMPLES}:{name}", epochs=1, limit=96, batch_size=32),
        log=lambda s: None,
        progress=False,
    )
    assert np.isfinite(m["train_loss"])


def test_a_network_of_builtin_layers_trains_without_sympy():
    code = (
        "import sys, numpy as np; from derivgrad import nn; "
        "net = nn.build(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), "
        "nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 3)), (1, 6, 6)); "
        "net.loss_and_grads(np.zeros((2, 1, 6, 6), np.float32), np.array([0, 2])); "
        "print('sympy' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.stdout.strip() == "False", r.stderr
