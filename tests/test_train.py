"""Training the LeNet: accuracy on the embedded subset, exact resumption after an
interrupt, refusal of a foreign checkpoint, and an end-to-end gradient check."""

import json
import subprocess
import sys

import numpy as np
import pytest
from resume import interrupted_and_resumed

import derivgrad.training.train as T
from derivgrad import gradcheck
from derivgrad.errors import CheckpointError
from derivgrad.training.model import lenet


def test_training_on_the_embedded_subset_learns(tmp_path):
    # 3200 images, one epoch, seed 0: about 84 % on the 2000 held-out images; chance is 10 %
    m, _ = T.train(
        T.config(epochs=1, limit=3200, checkpoint=str(tmp_path / "c.npz")),
        log=lambda s: None,
        progress=False,
    )
    assert m["test_acc"] > 0.75
    assert (tmp_path / "c.npz").exists()


def test_interrupt_and_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = dict(epochs=2, limit=640, batch_size=32, seed=3)
    full, net_full = T.train(T.config(**cfg), log=lambda s: None, progress=False)

    path = str(tmp_path / "c.npz")
    # interrupted at epoch 2, batch 7 (20 batches per epoch)
    resumed, net_res = interrupted_and_resumed(cfg, 27, path, monkeypatch)
    for (k, a), b in zip(net_full.named_params().items(), net_res.named_params().values()):
        assert np.array_equal(a, b), k
    strip = lambda h: [
        {k: v for k, v in e.items() if k not in ("seconds", "samples_per_s")} for e in h
    ]
    assert strip(resumed["history"]) == strip(full["history"])


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = str(tmp_path / "c.npz")
    T.train(
        T.config(epochs=1, limit=64, checkpoint=path, hidden=20), log=lambda s: None, progress=False
    )
    with pytest.raises(CheckpointError, match="--hidden 20"):
        T.train(
            T.config(epochs=2, limit=64, checkpoint=path, resume=True, hidden=30),
            log=lambda s: None,
            progress=False,
        )
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.npz"):
        T.train(
            T.config(epochs=1, checkpoint=str(tmp_path / "bad.npz"), resume=True),
            log=lambda s: None,
            progress=False,
        )


@pytest.mark.parametrize("batchnorm", [False, True])
def test_model_gradients_pass_central_differences(batchnorm):
    net = lenet(
        filters=3,
        kernel=3,
        hidden=4,
        classes=3,
        in_shape=(1, 6, 6),
        batchnorm=batchnorm,
        seed=1,
        dtype=np.float64,
    )
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 1, 6, 6)), np.array([0, 2, 1, 2])
    params = net.named_params()
    net.loss_and_grads(x, y)
    grads = {k: v.copy() for k, v in net.named_grads().items()}
    saved = {k: v.copy() for k, v in params.items()}

    def loss(**p):
        for k, v in p.items():
            params[k][...] = v
        from derivgrad import kernels as K

        out = K.softmax_cross_entropy_forward(net.forward(x, train=True), y)[0]
        for k, v in saved.items():
            params[k][...] = v
        return np.array(out)

    gradcheck(loss, saved, grads, mode="full", rtol=1e-5, atol=1e-7)


def test_cli_train_writes_metrics_and_refuses_bad_options(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "derivgrad",
            "train",
            "--epochs",
            "1",
            "--limit",
            "256",
            "--quiet",
            "--plot",
            str(tmp_path / "p.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["params"] == 1_446_030 and 0 <= metrics["test_acc"] <= 1
    assert (tmp_path / "p.png").stat().st_size > 1000
    bad = subprocess.run(
        [sys.executable, "-m", "derivgrad", "train", "--lr", "-1"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--lr" in bad.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "derivgrad", "train", "--data", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr


def test_predict_on_a_checkpoint(tmp_path):
    path = str(tmp_path / "c.npz")
    T.train(T.config(epochs=1, limit=1280, checkpoint=path), log=lambda s: None, progress=False)
    from derivgrad.training.data import load

    d = load()
    probs = T.predict(path, d["test_images"][:200])
    assert probs.shape == (200, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == d["test_labels"][:200]).mean() > 0.6


def test_fused_optimizers_match_their_definitions():
    from derivgrad.training.model import SGD, Adam

    rng = np.random.default_rng(9)
    p0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(3)]
    # SGD with momentum and weight decay, PyTorch's recurrence written out
    p, opt = p0.copy(), None
    opt = SGD({"p": p}, lr=0.1, momentum=0.9, weight_decay=0.01)
    ref, buf = p0.copy(), None
    for g in grads:
        opt.step({"p": g})
        d = g + 0.01 * ref
        buf = d if buf is None else 0.9 * buf + d
        ref = ref - 0.1 * buf
    assert np.allclose(p, ref)
    # Adam with bias correction
    p = p0.copy()
    opt = Adam({"p": p}, lr=0.01)
    ref, m, v = p0.copy(), 0, 0
    for t, g in enumerate(grads, 1):
        opt.step({"p": g})
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref = ref - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    assert np.allclose(p, ref)


def test_divergence_stops_with_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    T.train(T.config(epochs=1, limit=128, checkpoint=str(path)), log=lambda s: None, progress=False)
    before = path.read_bytes()
    with pytest.raises(T.DivergedError, match="lower --lr"):
        T.train(
            T.config(epochs=2, limit=256, lr=1e6, checkpoint=str(path), overwrite=True),
            log=lambda s: None,
            progress=False,
        )
    assert path.read_bytes() == before  # the good checkpoint survives
