"""The memory guard of ``train --model``: a network priced while it is built, refused in one
line before the layer that passes the limit allocates anything (the LeNet's rule,
:func:`derivgrad.training.config.training_bytes`).

References held apart from the pricing: the arrays the built network really holds, and the
outputs its forward pass really makes."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import derivgrad
from derivgrad import nn
from derivgrad.errors import ParamError
from derivgrad.training.config import EVAL_BATCH, MAX_TRAIN_BYTES, training_bytes


class Scale(nn.Module):
    """A layer of one's own: its parameter count is known only once created."""

    def out_shape(self, s):
        return s

    def create(self, s, rng, dtype):
        self.params = {"a": np.ones(s[0], dtype)}

    def forward(self, x, train):
        return x * self.params["a"][:, None, None]

    def backward(self, dy):
        return dy


def _counting(fwd, made):
    def run(x, train):
        y = fwd(x, train)
        made.append(math.prod(y.shape[1:]))
        return y

    return run


def _measured(net, in_shape):
    """Parameters held and activation values made per sample, by running forward."""
    made = [math.prod(in_shape)]
    for m in [*net.root.leaves(), *(m for m in net.layers if isinstance(m, nn.Residual))]:
        m.forward = _counting(m.forward, made)  # the leaves' outputs and Residual's sums
    net.forward(np.zeros((1, *in_shape), np.float32), True)
    params = sum(int(v.size) for v in net.named_params().values())
    return params, sum(made)


@settings(max_examples=10, deadline=None)
@given(c=st.integers(1, 4), f=st.integers(1, 6), h=st.integers(3, 9), residual=st.booleans())
def test_the_price_counts_what_the_network_holds(c, f, h, residual):
    op = derivgrad.define(
        "y[n, c, i, j] += x[n, c, i + u, j + v] * w[c, u, v]", x=(2, 4, 6, 6), w=(4, 3, 3)
    )
    block = nn.Sequential(nn.Pad2d(1), nn.Defined(op, w=(f, 3, 3)), nn.ReLU())
    net = nn.build(
        nn.Sequential(
            nn.Conv2d(c, f, 3, padding=1),
            nn.BatchNorm2d(f),
            Scale(),
            nn.Residual(block) if residual else block,
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(f * (h // 2) * ((h + 1) // 2), 3),
        ),
        (c, h, h + 1),
        batch=8,
    )
    params, activations = _measured(net, (c, h, h + 1))
    assert (net.budget.params, net.budget.activations) == (params, activations)


def test_a_network_over_the_limit_is_refused_at_the_layer_that_passes_it():
    # 1 + 400 channels of 28x28 per sample, evaluated 1,000 at a time: 3.5 GiB, under 4
    ok = nn.Sequential(nn.Conv2d(1, 400, 3, padding=1))
    nn.build(ok, (1, 28, 28), batch=64)
    assert training_bytes(400 * 10, 401 * 784, 64) <= MAX_TRAIN_BYTES
    # a ReLU after it adds another 400x28x28 per sample: over
    over = nn.Sequential(nn.Conv2d(1, 400, 3, padding=1), nn.ReLU(), nn.Flatten())
    with pytest.raises(ParamError, match=r"^layer 1 \(ReLU\): .* 4 GiB limit; make the network"):
        nn.build(over, (1, 28, 28), batch=64)
    # a larger training batch than the evaluation's: lowering it helps, and the line says so
    with pytest.raises(ParamError, match=r"at batch 4000 would need .* lower --batch-size"):
        nn.build(nn.Sequential(nn.Conv2d(1, 200, 3, padding=1)), (1, 28, 28), batch=4000)
    assert EVAL_BATCH < 4000
    # without a batch size nothing is priced (a network built for a look, or for predict)
    assert (
        nn.build(nn.Sequential(nn.Conv2d(1, 400, 3, padding=1), nn.ReLU()), (1, 8, 8)).budget
        is None
    )


def test_parameters_that_would_exhaust_memory_are_never_allocated():
    # 3.1e11 float32 weights: an allocation would fail with MemoryError, not this line
    huge = nn.Sequential(nn.Flatten(), nn.Linear(784, 400_000_000), nn.Linear(400_000_000, 10))
    with pytest.raises(ParamError, match=r"^layer 1 \(Linear 784->400000000\): .*GiB"):
        nn.build(huge, (1, 28, 28), batch=64)
    op = derivgrad.define("y[n, k] += x[n, i] * w[k, i]", x=(2, 3), w=(4, 3))
    with pytest.raises(ParamError, match=r"^layer 1 \(Defined .*GiB"):
        nn.build(nn.Sequential(nn.Flatten(), nn.Defined(op, w=(10**9, 4))), (1, 2, 2), batch=1)


def test_train_refuses_such_a_model_in_one_line(tmp_path):
    p = tmp_path / "big.py"
    p.write_text(
        "from derivgrad import nn\n\n\ndef model():\n"
        "    return nn.Sequential(nn.Conv2d(1, 512, 3, padding=1), nn.Flatten(),"
        " nn.Linear(512 * 28 * 28, 10))\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "derivgrad", "train", "--model", str(p), "--limit", "64", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("derivgrad train: error: layer 0 (Conv2d 1->512"), r.stderr
    assert "GiB limit" in lines[-1] and "Traceback" not in r.stderr


def test_the_lenet_written_in_nn_is_priced_as_the_built_in_lenet():
    # one rule for both: the LeNet's guard prices it from its spec, nn from the built layers
    from derivgrad.training.model import lenet_rows

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from networks import lenet_batchnorm

    net = nn.build(lenet_batchnorm(), (1, 28, 28), batch=64)
    rows = lenet_rows(batchnorm=True)
    assert net.budget.params == sum(r.params for r in rows)
    assert net.budget.activations == sum(math.prod(r.shape) for r in rows) + 28 * 28
