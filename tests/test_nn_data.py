"""Training a network of one's own on a plain .npz of images of any size: the shape flows
into the network, every array is validated, nothing is unpickled."""

from __future__ import annotations

import numpy as np
import pytest

import derivgrad.training.train as T
from derivgrad.errors import DataError, UsageError
from derivgrad.training.data_npz import load_npz

NET = """
from derivgrad import nn


def model():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
"""


def _stripes(n, rng):
    """Three classes a small net separates: which of 3 channels carries the bright stripe."""
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 60, (n, 3, 8, 8)).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, c, :, 2:5] = 250
    return x, y


def test_a_npz_of_colour_images_trains_and_its_shape_reaches_the_network(tmp_path):
    rng = np.random.default_rng(0)
    x, y = _stripes(300, rng)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (tmp_path / "net.py").write_text(NET)
    m, net = T.train(
        T.config(model=str(tmp_path / "net.py"), data=str(tmp_path / "d.npz"), epochs=2,
                 batch_size=16, lr=0.05),
        log=lambda s: None, progress=False,
    )  # fmt: skip
    assert net.in_shape == (3, 8, 8)
    assert m["test_acc"] >= 0.9  # chance is 1/3; the last 30 images are the test set

    xs, ys, xt, yt = load_npz(tmp_path / "d.npz")
    assert xs.shape == (270, 3, 8, 8) and xt.shape == (30, 3, 8, 8)
    assert np.array_equal(yt, y[270:]) and np.allclose(xs * 255, x[:270])


def test_grey_images_and_a_given_test_set(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.random((5, 6, 7)), y=np.arange(5),
             x_test=rng.random((2, 6, 7)), y_test=np.array([1, 0]))  # fmt: skip
    xs, ys, xt, yt = load_npz(tmp_path / "d.npz")
    assert xs.shape == (5, 1, 6, 7) and xs.dtype == np.float32 and xt.shape == (2, 1, 6, 7)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x=np.zeros((4, 5, 5))), "expected arrays x and y"),
        (dict(x=np.zeros((4, 5, 5)), y=np.zeros(4)), "integer labels"),
        (dict(x=np.zeros((4, 5, 5)), y=np.arange(3)), "4 images but y"),
        (dict(x=np.zeros((4, 5)), y=np.arange(4)), "N x C x H x W"),
        (dict(x=np.zeros((4, 5, 5), np.int32), y=np.arange(4)), "uint8 or float"),
        (dict(x=np.full((4, 5, 5), np.nan), y=np.arange(4)), "not finite"),
        (dict(x=np.zeros((4, 5, 5)), y=-np.arange(4)), "label -3"),
        (dict(x=np.zeros((4, 5, 5)), y=np.arange(4), x_test=np.zeros((1, 5, 5))), "together"),
        (dict(x=np.zeros((4, 5, 5)), y=np.arange(4), z=np.zeros(1)), "found x, y, z"),
        (dict(x=np.zeros((1, 5, 5)), y=np.arange(1)), "nothing to hold out"),
        (dict(x=np.array([{}] * 2, dtype=object), y=np.arange(2)), "not a readable .npz"),
    ],
)
def test_a_bad_npz_is_one_line(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=message) as e:
        load_npz(p)
    assert "\n" not in str(e.value)


def test_not_a_zip_and_the_lenet_on_npz_are_refused(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"nothing")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 28, 28)), y=np.arange(4))
    with pytest.raises(UsageError, match="goes with --model"):
        T.train(T.config(data=str(tmp_path / "d.npz")), log=lambda s: None, progress=False)


# -- CIFAR-10's python batches --------------------------------------------------------------
CIFAR_NET = """
from derivgrad import nn


def model():
    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.MaxPool2d(5), nn.Flatten(),
                         nn.Linear(2 * 6 * 6, 10))
"""


def _cifar(d, rng, batches=2, n=40):
    import pickle

    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, batches + 1)] + ["test_batch"]:
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        batch = {b"batch_label": b"x", b"labels": [int(v) for v in y], b"data": x}
        # protocol 4: bytes as bytes (a protocol-2 pickle from Python 3 needs _codecs,
        # which the restricted reader refuses; the real files are Python 2 strings)
        (d / name).write_bytes(pickle.dumps(batch, protocol=4))


def test_cifar_batches_are_read_and_train_a_network(tmp_path):
    from derivgrad.training.data_cifar import load_cifar

    _cifar(tmp_path / "c", np.random.default_rng(0))
    x, y, xt, yt = load_cifar(tmp_path / "c")
    assert x.shape == (80, 3, 32, 32) and xt.shape == (40, 3, 32, 32) and y.dtype == np.int64
    import pickle

    raw = pickle.loads((tmp_path / "c" / "data_batch_2").read_bytes())
    # channels first: row r's pixels 0..1023 are the red plane, read row by row
    assert np.array_equal(x[40 + 3, 1].reshape(-1) * 255, raw[b"data"][3, 1024:2048])
    (tmp_path / "net.py").write_text(CIFAR_NET)
    m, net = T.train(
        T.config(model=str(tmp_path / "net.py"), data=str(tmp_path / "c"), epochs=1,
                 batch_size=16),
        log=lambda s: None, progress=False,
    )  # fmt: skip
    assert net.in_shape == (3, 32, 32) and np.isfinite(m["test_loss"])


def test_a_cifar_batch_that_is_not_arrays_is_refused(tmp_path):
    import os
    import pickle

    from derivgrad.training.data_cifar import load_cifar

    _cifar(tmp_path / "c", np.random.default_rng(0), batches=1)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar(tmp_path / "c")
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}
    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps(bad, protocol=4))
    with pytest.raises(DataError, match="label 12"):
        load_cifar(tmp_path / "c")
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}
    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps(bad, protocol=4))
    with pytest.raises(DataError, match="3072"):
        load_cifar(tmp_path / "c")


def _idx(path, a):
    import struct

    head = struct.pack(">BBBB", 0, 0, 8, a.ndim) + b"".join(struct.pack(">I", n) for n in a.shape)
    path.write_bytes(head + a.astype(np.uint8).tobytes())


def test_a_directory_of_idx_files_like_fashion_mnist_trains_a_network(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "fashion"
    d.mkdir()
    for part, n in (("train", 64), ("t10k", 32)):
        _idx(d / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(d / f"{part}-labels-idx1-ubyte", rng.integers(0, 10, n))
    (tmp_path / "net.py").write_text(
        "from derivgrad import nn\n"
        "def model():\n"
        "    return nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(49, 10))\n"
    )
    m, net = T.train(
        T.config(model=str(tmp_path / "net.py"), data=str(d), epochs=1, batch_size=16),
        log=lambda s: None,
        progress=False,
    )
    assert net.in_shape == (1, 28, 28) and np.isfinite(m["test_loss"])
