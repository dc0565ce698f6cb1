"""Worked problem 12 (the course LeNet) is a case of the network machinery: its document is
netdoc's, its layers are lenet_spec's written as nn layers in the homework's names, the
whole network is proved as one expression, and a wrong layer rule does not get through."""

from __future__ import annotations

import numpy as np
import pytest

from derivgrad import derive
from derivgrad.documents.instance import attach, evaluate, substitutions
from derivgrad.documents.render import build, to_text
from derivgrad.netdoc import composed as C
from derivgrad.ops import lenet as L
from derivgrad.symbolic.derivation import Derivation

SIZES = dict(input=(4, 4), kernel=3, filters=2, hidden=2, classes=2, label=1)


@pytest.fixture(scope="module")
def proved():
    d = derive("lenet", **SIZES)
    d.verify()  # the op's own proof: SymPy's derivative of the lenet op's one expression
    return d, L.network_derivation(d)


def test_the_lenet_document_is_the_network_machinerys(proved):
    d, nd = proved
    assert nd.failures == []
    assert [nd.tag(s.index) for s in nd.steps] == ["conv", "pool", "flat", "fc1", "relu", "fc2"]
    assert all(s.d is not None and s.d.verified for s in nd.steps)
    # the whole network as one expression, proved and equal at the sample
    assert nd.composed is not None and nd.composed.verified and nd.composed_error <= 1.0
    # every parameter's gradient has a nonzero entry (the seed is chosen for it)
    params = [(s, k) for s in nd.steps for k in (s.face.names if s.face else {})]
    assert len(params) == 6
    assert all(np.any(np.asarray(s.grads[k], dtype=float) != 0) for s, k in params)
    text = " ".join(to_text(build(d)).split())
    for said in (
        "Proof: the whole network as one expression",
        "derivgrad proved the two equal symbolically",
        "All agree",
    ):
        assert said in text


def test_the_layer_by_layer_numbers_are_the_lenet_ops_composed_derivative(proved):
    """A third path: the lenet op (its own SymPy expression of the whole network, written
    apart from netdoc) evaluated at the document's numbers gives the document's gradients."""
    d, nd = proved
    conv, fc1, fc2 = (s for s in nd.steps if s.face is not None and s.face.names)
    ours = {"w": (conv, "w"), "b": (conv, "b"), "W1": (fc1, "W"), "b1": (fc1, "b")}
    ours.update({"W2": (fc2, "W"), "b2": (fc2, "b")})
    values = {"x": nd.x.reshape(4, 4)}
    for name, (s, k) in ours.items():
        values[name] = s.module.params[s.face.names[k]].reshape(d.input_arrays[name].shape)
    e = attach(d, values)
    subs = substitutions(e)
    for name, (s, k) in ours.items():
        exact = np.array(evaluate(e.grad_array(name), subs), dtype=np.float64).reshape(-1)
        assert np.any(exact != 0)
        np.testing.assert_allclose(
            np.asarray(s.grads[k], dtype=np.float64).reshape(-1), exact, rtol=1e-12, atol=1e-15
        )


def _planted_linear_W(monkeypatch):
    """The linear op's rule for W times 1.01: a wrong local rule of fc1 and fc2."""
    real = Derivation.grad_array

    def wrong(self, name):
        g = real(self, name)
        return g * 1.01 if self.op == "linear" and name == "W" else g

    monkeypatch.setattr(Derivation, "grad_array", wrong)


def test_a_planted_wrong_layer_rule_is_caught_by_the_layers_proof(monkeypatch):
    _planted_linear_W(monkeypatch)
    d = derive("lenet", **SIZES)
    d.verified = True  # as if the op's own proof had run: the layers are proved again
    with pytest.raises(AssertionError, match="linear"):
        L.network_derivation(d)


def test_a_planted_wrong_layer_rule_is_caught_by_the_kernels_without_proofs(monkeypatch):
    _planted_linear_W(monkeypatch)
    d = derive("lenet", **SIZES)  # not verified: no proofs, the kernels' check remains
    nd = L.network_derivation(d)
    assert {f.split(":")[0] for f in nd.failures} == {
        "layer 3 (Linear 2->2)",
        "layer 5 (Linear 2->2)",
    }
    assert all("∂L/∂W" in f for f in nd.failures)
    text = " ".join(to_text(build(d)).split())
    assert "They DIFFER at" in text and "All agree" not in text


def test_a_wrong_composition_is_caught_by_the_composed_proof(proved):
    """The composed proof checks the chain itself: fc1's rule wrong only where the
    composition reads it (its own proof held) is refused, and its numbers differ."""
    _, nd = proved
    fc1 = next(s for s in nd.steps if nd.tag(s.index) == "fc1")
    sym = fc1.sym
    good = sym.grad_array("W")
    try:
        sym._cache[("grad", "W")] = good * 1.01
        cd = C.compose(nd)
        with pytest.raises(AssertionError):
            cd.verify()
        kept, nd.composed = nd.composed, cd
        assert C.check_composed(nd, 1e-9) > 1.0
        nd.composed = kept
    finally:
        sym._cache[("grad", "W")] = good
