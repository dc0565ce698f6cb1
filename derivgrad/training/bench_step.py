"""Where one LeNet training step's time goes (``derivgrad bench --step``).

Runs the training loop's step (``derivgrad.training.train``: batch gather, the forward and
loss, the finite-loss check, the backward with each layer's update right after it, the
accuracy count) on synthetic MNIST-shaped data, first
plainly to time the whole step, then with each layer's ``forward``/``backward``, the loss,
the optimizer and the batch gather wrapped in timers.  ``rest`` is the instrumented step
minus its timed parts: Python glue between the calls and the bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from derivgrad import kernels as K
from derivgrad.training.model import SGD, lenet


def _data(n, rng):
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    return np.ascontiguousarray(x), rng.integers(0, 10, n).astype(np.int64)


def _check(loss):
    if not np.isfinite(loss):
        raise FloatingPointError(f"loss {loss}")


def _loss_and_update(net, opt, xb, yb):
    """The one-process training step's update, folded or not as the training loop does it."""
    from derivgrad.training import train

    if train.FOLD_UPDATE:
        return net.loss_and_update(xb, yb, opt, _check)
    loss, probs = net.loss_and_grads(xb, yb)
    _check(loss)
    opt.step(net.named_grads())
    return loss, probs


def _step(net, opt, xtr, ytr, idx):
    xb, yb = xtr[idx], ytr[idx]
    loss, probs = _loss_and_update(net, opt, xb, yb)
    return int((probs.argmax(1) == yb).sum())


def breakdown(steps: int = 200, batch: int = 64, seed: int = 0) -> dict:
    """``{"step": median ms of a plain step, "instrumented": mean ms of an instrumented
    one, "parts": [(name, mean ms), ...]}`` at the current thread count
    (:func:`derivgrad.kernels.set_threads`); the parts add up to ``instrumented``."""
    rng = np.random.default_rng(seed)
    xtr, ytr = _data(batch * 64, rng)
    net = lenet(seed=seed)
    opt = SGD(net.named_params(), 0.01, 0.9)
    batches = len(ytr) // batch
    perm = rng.permutation(len(ytr))
    idxs = [perm[(i % batches) * batch : (i % batches + 1) * batch] for i in range(steps)]
    for i in range(5):  # warm-up: compile or load kernels, fault in workspaces
        _step(net, opt, xtr, ytr, idxs[i])
    plain = []
    for idx in idxs:
        t = time.perf_counter()
        _step(net, opt, xtr, ytr, idx)
        plain.append(time.perf_counter() - t)

    acc: dict[str, list[float]] = {}

    def timed(name, fn):
        def run(*a, **k):
            t = time.perf_counter()
            r = fn(*a, **k)
            acc.setdefault(name, [0.0])[-1] += time.perf_counter() - t
            return r

        return run

    names = [f"{i} {layer.describe()}" for i, layer in enumerate(net.layers)]
    for name, layer in zip(names, net.layers):
        layer.forward = timed(f"{name} forward", layer.forward)  # type: ignore[method-assign]
    for name, layer in reversed(list(zip(names, net.layers))):
        layer.backward = timed(f"{name} backward", layer.backward)  # type: ignore[method-assign]
    loss_f = K.softmax_cross_entropy_forward
    loss_b = K.softmax_cross_entropy_backward
    # per parameter: the training loop runs each layer's update right after its backward
    name = "optimizer (SGD momentum)"
    opt.update = timed(name, opt.update)  # type: ignore[method-assign]
    total = []
    import derivgrad.training.model as model_mod

    try:
        model_mod.K = _LossTimed(K, timed("loss fwd+bwd", loss_f), timed("loss fwd+bwd", loss_b))
        for idx in idxs:
            for v in acc.values():
                v.append(0.0)
            t = time.perf_counter()
            t_data = time.perf_counter()
            xb, yb = xtr[idx], ytr[idx]
            acc.setdefault("data batch (gather)", [0.0])[-1] += time.perf_counter() - t_data
            loss, probs = _loss_and_update(net, opt, xb, yb)
            int((probs.argmax(1) == yb).sum())
            total.append(time.perf_counter() - t)
    finally:
        model_mod.K = K
    # means, so that the parts add up to the instrumented step (medians would not)
    mean = lambda v: float(np.mean(v)) * 1e3
    parts = [(k, mean(v[-len(total) :])) for k, v in acc.items()]
    rest = mean(total) - sum(ms for _, ms in parts)
    return dict(
        step=float(np.median(plain)) * 1e3,
        instrumented=mean(total),
        parts=parts + [("rest (glue, checks)", rest)],
    )


class _LossTimed:
    """``derivgrad.kernels`` with the two loss functions replaced by timed ones."""

    def __init__(self, k, fwd, bwd):
        self._k, self.softmax_cross_entropy_forward = k, fwd
        self.softmax_cross_entropy_backward = bwd

    def __getattr__(self, name):
        return getattr(self._k, name)


def print_breakdown(threads: int, steps: int = 200, out: Callable[..., None] = print) -> dict:
    r = breakdown(steps)
    out(
        f"LeNet training step, batch 64, {threads} thread(s): median {r['step']:.2f} ms "
        f"(instrumented: mean {r['instrumented']:.2f} ms over {steps} steps, split below)"
    )
    for name, ms in r["parts"]:
        out(f"  {name:44s} {ms:7.3f} ms")
    return r
