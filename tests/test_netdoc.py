"""``derivgrad derive --model``: a network of one's own written out layer by layer.

The network here has every kind of node the document handles: built-in layers (conv, ReLU,
max pooling, flatten, linear), a residual sum and a layer written in index notation.  Its
printed numbers are held to references written apart from the document: the network's own
backward pass run again, and central differences of its loss.
"""

import json
import math
import textwrap

import numpy as np
import pytest

from derivgrad import formats
from derivgrad.cli import main
from derivgrad.errors import ParamError
from derivgrad.netdoc import derive_network, render_network
from derivgrad.netdoc.derivation import scale
from derivgrad.nn.source import load
from derivgrad.training import model as M

NET = textwrap.dedent(
    """
    import derivgrad
    from derivgrad import nn

    scale = derivgrad.define("y[n, c, i, j] = x[n, c, i, j] * s[c]", x=(1, 2, 2, 2), s=(2,))

    def model():
        return nn.Sequential(
            nn.Conv2d(1, 2, 3),
            nn.ReLU(),
            nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU())),
            nn.MaxPool2d(2),
            nn.Defined(scale, s=(2,)),
            nn.Flatten(),
            nn.Linear(8, 3),
        )

    def image():
        return nn.Sequential(nn.Conv2d(1, 1, 3))

    def big():
        return nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8 * 38 * 38, 10))
    """
)


@pytest.fixture(scope="module")
def net_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("netdoc") / "net.py"
    path.write_text(NET)
    return str(path)


@pytest.fixture(scope="module")
def nd(net_file):
    return derive_network(load(net_file), (1, 6, 6), label=2, seed=3, spec="net.py")


def test_every_node_is_derived_proved_and_agrees_with_the_kernels(nd):
    kinds = [type(s.module).__name__ for s in nd.steps]
    assert kinds == [
        "Conv2d", "ReLU", "Conv2d", "ReLU", "Residual", "MaxPool2d", "Defined", "Flatten", "Linear"
    ]  # fmt: skip
    for s in nd.steps:
        if not s.residual:
            assert s.d is not None and s.d.verified, s.module.describe()
        assert s.errors and all(e <= 1.0 for e in s.errors.values()), (s.index, s.errors)
    assert nd.failures == []
    # the softmax is not one-hot (else every δ would be 0 or ±1 and show nothing)
    assert 0.01 < nd.probs.max() < 0.99


def test_a_network_the_composed_proof_cannot_take_says_why(nd):
    """Where the whole network is not proved as one expression (here a defined layer proved
    by its own method, and 9 nodes past the size limit), the document and the JSON say why
    instead of staying silent."""
    assert nd.composed is None and "proved by its own method" in nd.composed_why
    text = " ".join(render_network(nd, "text").split())
    assert "Proof: the whole network as one expression" in text
    assert "was not derived: layer 7 (Defined" in text
    data = json.loads(render_network(nd, "json"))
    assert data["composed"]["proved"] is False
    assert data["composed"]["why_not"] == nd.composed_why


def test_printed_gradients_equal_a_fresh_backward_and_central_differences(nd):
    """Every parameter gradient read back from the JSON document equals the network's
    backward run again, and (a few entries each) central differences of the loss."""
    data = json.loads(render_network(nd, "json"))
    net = nd.net
    x = np.asarray(data["x"], dtype=np.float64)[None]
    labels = np.array([data["label"] - 1])
    loss, _ = net.loss_and_grads(x, labels)
    assert math.isclose(loss, data["loss"], rel_tol=1e-12)
    grads, params = net.named_grads(), net.named_params()
    # a layer's path "2.0.0" and its parameter "w" are the network's "2.0.0.w"
    printed = {
        f"{layer['name']}.{layer['parameter_names'][k]}": np.asarray(g, dtype=np.float64)
        for layer in data["layers"]
        for k, g in (layer.get("gradients") or {}).items()
        if k in layer.get("parameter_names", {})
    }
    assert set(printed) == set(grads), (sorted(printed), sorted(grads))
    rng = np.random.default_rng(0)
    checked = 0
    for key, g in printed.items():
        np.testing.assert_allclose(g.reshape(-1), grads[key].reshape(-1), rtol=1e-10, atol=1e-12)
        live = params[key].reshape(-1)
        for i in rng.choice(live.size, min(4, live.size), replace=False):
            v, h = live[i], 1e-6
            mid = net.loss_and_grads(x, labels)[0]
            live[i] = v + h
            hi = net.loss_and_grads(x, labels)[0]
            live[i] = v - h
            lo = net.loss_and_grads(x, labels)[0]
            live[i] = v
            # integer numbers sit on kinks (a ReLU at 0, a tied window), where the two one-sided
            # slopes differ and no difference quotient is the kernels' convention: skipped
            if abs((hi - mid) - (mid - lo)) / h > 1e-4:
                continue
            assert math.isclose(g.reshape(-1)[i], (hi - lo) / (2 * h), abs_tol=1e-6), (key, i)
            checked += 1
    assert checked >= 12


@pytest.mark.parametrize("fmt", formats.names())
def test_the_document_renders_in_every_format(nd, fmt):
    text = render_network(nd, fmt)
    assert len(text) > 5000
    if fmt == "json":
        data = json.loads(text)
        assert data["agrees"] is True and len(data["layers"]) == len(nd.steps)
        assert all(layer["agrees"] for layer in data["layers"])
        return
    for needle in ("Layer 9", "chain from the loss", "Checked against the kernels", "All agree"):
        assert needle in text, (fmt, needle)
    assert "DIFFER" not in text


def test_the_printed_loss_and_probabilities_are_the_networks(nd):
    text = render_network(nd, "text")
    assert f"L = {nd.trace.loss:.6g}" in text
    assert f"{nd.trace.probs[0, 0]:.6g}" in text


def test_a_planted_wrong_layer_is_caught_and_named(net_file, monkeypatch):
    backward = M.Linear.backward

    def wrong(self, dy):  # the weight gradient 1 % off
        dx = backward(self, dy)
        self.grads["w"] = self.grads["w"] * 1.01
        return dx

    monkeypatch.setattr(M.Linear, "backward", wrong)
    nd = derive_network(load(net_file), (1, 6, 6), label=2, seed=3, spec="net.py")
    assert len(nd.failures) == 1, nd.failures
    assert "Linear 8->3" in nd.failures[0] and "∂L/∂W" in nd.failures[0]
    text = render_network(nd, "text")
    assert "DIFFER" in text and "All agree" not in text


def test_a_planted_wrong_defined_layer_is_caught(net_file, monkeypatch):
    from derivgrad.nn import defined

    backward = defined.Defined.backward
    monkeypatch.setattr(defined.Defined, "backward", lambda self, dy: backward(self, dy) * 0.5)
    nd = derive_network(load(net_file), (1, 6, 6), label=2, seed=3, spec="net.py")
    # the layer's own ∂L/∂x is named first; the layers below it then see a wrong δ
    assert nd.failures and "Defined" in nd.failures[-1] and "∂L/∂x" in nd.failures[-1]
    assert not any("Linear" in f for f in nd.failures)


def test_cli_writes_the_document_and_exits_1_on_a_wrong_layer(
    net_file, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "net.md"
    assert main(["derive", "--model", net_file, "--input", "1x6x6", "-o", str(out)]) == 0
    assert "Layer 9: Linear" in out.read_text()
    backward = M.Linear.backward
    monkeypatch.setattr(M.Linear, "backward", lambda self, dy: backward(self, dy) * 1.5)
    capsys.readouterr()
    assert main(["derive", "--model", net_file, "--format", "json", "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("derivgrad derive: the derived numbers differ")
    assert "Linear" in err[-1]
    assert json.loads(out.read_text())["agrees"] is False


@pytest.mark.parametrize(
    "args, says",
    [
        (["--model", "missing.py"], "no file missing.py"),
        (["--input", "1x2x2"], "layer 0 (Conv2d"),
        (["--input", "1x6"], "layer 0 (Conv2d"),
        (["--input", "1xtwo"], "--input must be sizes"),
        (["--label", "4"], "--label must be one of 1..3"),
        (["--kernel", "3"], "--model takes --input, --label and --seed, not --kernel"),
        (["--random-values", "1"], "--model draws its own numbers"),
        (["conv2d"], "give --model alone"),
        ([":image"], "needs one axis of class scores"),
        ([":big", "--input", "1x40x40"], "too large for a symbolic derivation"),
    ],
)
def test_bad_input_is_one_line(net_file, args, says, capsys):
    argv = ["derive", "--model", net_file, "--format", "text", "-o", "/dev/null"]
    if args and args[0].startswith(":"):
        argv[2] = net_file + args[0]
        args = args[1:]
    elif args[:1] == ["--model"]:
        argv = ["derive", "--format", "text"]
    assert main(argv + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err


def test_the_weight_scale_keeps_forward_numbers_exact():
    for shape in [(2, 1, 3, 3), (3, 8), (2,), (16, 3, 3)]:
        s = scale(shape)
        assert math.log2(s).is_integer() and s <= 1  # dyadic: times an integer stays exact


def test_the_guard_refuses_before_any_symbolic_work(net_file):
    with pytest.raises(ParamError, match="too large"):
        derive_network(load(net_file + ":big"), (1, 40, 40), spec="net.py:big")


LENET = textwrap.dedent(
    """
    from derivgrad import nn

    def model():
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2),
                             nn.ReLU(), nn.Linear(2, 2))
    """
)


def test_the_course_lenet_written_layer_by_layer_equals_its_composed_proof(tmp_path):
    """The reduced LeNet of worked problem 12 as a network of one's own: the gradients the
    layers' derivations hand down equal the lenet op's, which SymPy differentiates through
    the whole network as one expression, at the same numbers."""
    from derivgrad import derive
    from derivgrad.documents.instance import attach, evaluate, substitutions

    path = tmp_path / "lenet.py"
    path.write_text(LENET)
    nd = derive_network(load(str(path)), (1, 4, 4), label=1, seed=5, spec="lenet.py")
    assert nd.failures == []
    # small enough for the whole network as one expression: proved, equal at the sample
    assert nd.composed is not None and nd.composed.verified and nd.composed_error <= 1.0
    conv, fc1, fc2 = (s for s in nd.steps if s.face is not None and s.face.names)
    d = derive("lenet", input=(4, 4), kernel=3, filters=2, hidden=2, classes=2, label=1)
    ours = {"w": (conv, "w"), "b": (conv, "b"), "W1": (fc1, "W"), "b1": (fc1, "b")}
    ours.update({"W2": (fc2, "W"), "b2": (fc2, "b")})
    values = {"x": nd.x.reshape(4, 4)}
    for name, (s, k) in ours.items():
        values[name] = s.module.params[s.face.names[k]].reshape(d.input_arrays[name].shape)
    d = attach(d, values)
    subs = substitutions(d)
    nonzero = 0
    for name, (s, k) in ours.items():
        exact = np.array(evaluate(d.grad_array(name), subs), dtype=np.float64).reshape(-1)
        nonzero += bool(np.any(exact != 0))
        np.testing.assert_allclose(
            np.asarray(s.grads[k], dtype=np.float64).reshape(-1), exact, rtol=1e-12, atol=1e-15
        )
    assert nonzero == len(ours)  # every parameter's gradient compared, none vacuously zero
    assert math.isclose(nd.loss_value, float(evaluate(d.output_array, subs)[0]), rel_tol=1e-12)


OTHERS = textwrap.dedent(
    """
    from derivgrad import nn

    def model():
        return nn.Sequential(nn.Pad2d(1), nn.Conv2d(1, 1, 3), nn.BatchNorm2d(1), nn.Sigmoid(),
                             nn.AvgPool2d(2), nn.Flatten(), nn.Linear(1, 2))
    """
)


def test_batch_norm_sigmoid_average_pooling_and_a_layer_without_an_op(tmp_path):
    path = tmp_path / "others.py"
    path.write_text(OTHERS)
    seen = []
    nd = derive_network(
        load(str(path)),
        (1, 2, 2),
        label=2,
        seed=1,
        spec="others.py",
        progress=lambda k, n, layer: seen.append((k, n, layer)),
    )
    assert nd.failures == []
    # each layer with an op reported before its derivation; Pad2d (no op) has none
    assert [k for k, _, _ in seen] == [2, 3, 4, 5, 6, 7] and {n for _, n, _ in seen} == {7}
    pad = nd.steps[0]
    assert pad.d is None and "backward (central differences)" in pad.errors
    assert all(s.d is not None and s.d.verified for s in nd.steps[1:])
    text = " ".join(render_network(nd, "text").split())
    assert "names no op of derivgrad" in text and "All agree" in text


def test_a_wrong_layer_without_an_op_is_caught_by_central_differences(tmp_path, monkeypatch):
    from derivgrad.nn import layers

    path = tmp_path / "others.py"
    path.write_text(OTHERS)
    backward = layers.Pad2d.backward
    monkeypatch.setattr(layers.Pad2d, "backward", lambda self, dy: backward(self, dy) * 1.01)
    nd = derive_network(load(str(path)), (1, 2, 2), label=2, seed=1, spec="others.py")
    assert nd.failures and "Pad2d" in nd.failures[0]


def test_the_pdf_compiles_without_overfull_boxes(nd, tmp_path):
    import shutil

    from derivgrad.documents.render import compile_pdf

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed here")
    overfull: list[str] = []
    compile_pdf(render_network(nd, "latex"), tmp_path / "net.pdf", overfull=overfull)
    assert (tmp_path / "net.pdf").stat().st_size > 10_000 and overfull == []
