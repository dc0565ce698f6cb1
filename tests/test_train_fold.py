"""The optimizer folded into the backward (``Sequential.loss_and_update``, what a one-process
training run does) against the separate pass after the whole backward: the same bits in
the parameters, the optimizer state, the batch-norm buffers, the gradients, the history and
the checkpoint, with and without an interrupt and resume."""

import numpy as np
import pytest
from resume import interrupted_and_resumed

import derivgrad.training.train as T
from derivgrad.training.model import SGD, Adam, lenet

SMALL = dict(epochs=2, limit=192, batch_size=32, seed=5, hidden=24, filters=4)

CASES = [
    dict(optimizer="sgd", momentum=0.0),  # plain SGD: no momentum buffer
    dict(optimizer="sgd", momentum=0.9, weight_decay=1e-2),
    dict(optimizer="sgd", momentum=0.0, weight_decay=5e-2, batchnorm=True),
    dict(optimizer="adam", lr=1e-3),
    dict(optimizer="adam", lr=1e-3, weight_decay=1e-2, batchnorm=True),
]


def _checkpoint_arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith("a/")}


def _run(cfg, path, fold, monkeypatch, resume_at=None):
    monkeypatch.setattr(T, "FOLD_UPDATE", fold)
    if resume_at is None:
        m, net = T.train(T.config(checkpoint=path, **cfg), log=lambda s: None, progress=False)
    else:
        m, net = interrupted_and_resumed(cfg, resume_at, path, monkeypatch)
    return m, net, _checkpoint_arrays(path)


def _same(a, b):
    m_a, net_a, ck_a = a
    m_b, net_b, ck_b = b
    assert ck_a.keys() == ck_b.keys()
    for k in ck_a:  # parameters, buffers and the optimizer's state, as checkpointed
        assert ck_a[k].dtype == ck_b[k].dtype and np.array_equal(ck_a[k], ck_b[k]), k
    for what in ("named_params", "named_grads", "named_buffers"):
        da, db = getattr(net_a, what)(), getattr(net_b, what)()
        assert da.keys() == db.keys()
        for k in da:
            assert np.array_equal(da[k], db[k]), (what, k)
    strip = lambda h: [
        {k: v for k, v in e.items() if k not in ("seconds", "samples_per_s")} for e in h
    ]
    assert strip(m_a["history"]) == strip(m_b["history"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_folded_update_is_bit_identical_to_the_separate_pass(case, tmp_path, monkeypatch):
    cfg = {**SMALL, **case}
    folded = _run(cfg, str(tmp_path / "f.npz"), True, monkeypatch)
    separate = _run(cfg, str(tmp_path / "s.npz"), False, monkeypatch)
    _same(folded, separate)
    # and the run moved: a fold that updated nothing would also agree with itself
    init = lenet(filters=4, hidden=24, seed=5, batchnorm=bool(case.get("batchnorm")))
    moved = [
        not np.array_equal(p, q)
        for p, q in zip(init.named_params().values(), folded[1].named_params().values())
    ]
    assert all(moved)


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=["sgd-momentum-wd", "adam-wd-bn"])
def test_folded_run_resumed_equals_a_separate_pass_run(case, tmp_path, monkeypatch):
    cfg = {**SMALL, **case}
    separate = _run(cfg, str(tmp_path / "s.npz"), False, monkeypatch)
    # 6 batches an epoch: cut in epoch 2 after 2 batches, resumed folded
    resumed = _run(cfg, str(tmp_path / "r.npz"), True, monkeypatch, resume_at=9)
    _same(resumed, separate)


def _batch(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize("make", [lambda p: SGD(p, 0.1, 0.9, 1e-2), lambda p: Adam(p, 1e-2)])
def test_a_refused_loss_leaves_every_parameter_as_it_was(make):
    net = lenet(filters=3, hidden=10, seed=1)
    opt = make(net.named_params())
    before = {k: v.copy() for k, v in net.named_params().items()}

    def refuse(loss):
        raise FloatingPointError("refused")

    x, y = _batch()
    with pytest.raises(FloatingPointError):
        net.loss_and_update(x, y, opt, refuse)
    assert opt.steps == 0
    for k, v in net.named_params().items():
        assert np.array_equal(v, before[k]), k


def test_an_optimizer_of_other_arrays_or_a_shared_parameter_is_refused():
    net = lenet(filters=3, hidden=10, seed=1)
    x, y = _batch()
    other = {k: v.copy() for k, v in net.named_params().items()}
    with pytest.raises(ValueError, match="does not own"):
        net.loss_and_update(x, y, SGD(other, 0.1))
    fc1, fc2 = net.layer("fc1"), net.layer("fc2")
    fc2.params["b"] = fc1.params["b"]  # the same array in two layers
    with pytest.raises(ValueError, match="shared"):
        net.loss_and_update(x, y, SGD(net.named_params(), 0.1))
