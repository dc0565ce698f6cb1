"""Worked problem 12b: the LeNet homework at its real size.  Its printed forms are evaluated
at 64x1x28x28 and compared with the training's LeNet; planted slips in a form are caught."""

import numpy as np
import pytest

from derivgrad import formats
from derivgrad.ops import lenet_homework as H
from derivgrad.training.model import lenet_rows


def test_every_form_agrees_with_the_kernels_at_the_real_size():
    r = H.check(0)
    assert set(r["rows"]) == {
        "logits", "loss", "conv.w", "conv.b", "fc1.w", "fc1.b", "fc2.w", "fc2.b"
    }  # fmt: skip
    for name, (scalar, vector) in r["rows"].items():
        assert scalar < H.RTOL and vector < H.RTOL, name
    # the parameter count the document prints is the network's, counted apart
    assert sum(r["sizes"].values()) == sum(row.params for row in lenet_rows()) == 1_446_030
    assert 0 < r["ties"] < r["windows"] == 64 * 20 * 12 * 12


def test_the_flatten_map_is_row_major():
    want = np.arange(1, 2881).reshape(20, 12, 12)
    for c, m, l in np.ndindex(20, 12, 12):  # noqa: E741
        assert H.flat_index(c + 1, m + 1, l + 1) == want[c, m, l]


def test_a_wrong_flatten_map_is_caught(monkeypatch):
    # m and l swapped: a map onto 1..2880 still, so only the numbers can tell
    monkeypatch.setattr(H, "flat_index", lambda c, m, l, side=12: (c - 1) * 144 + (l - 1) * 12 + m)
    r = H.check(0)
    assert r["rows"]["fc1.w"][0] > H.RTOL and r["rows"]["logits"][0] > H.RTOL
    assert r["rows"]["fc1.w"][1] < H.RTOL  # the vector form does not use the map


def test_a_wrong_im2col_is_caught(monkeypatch):
    im2col = H.im2col

    def transposed(a, k, s):  # each window read column-major
        n, c, h, w = a.shape
        return im2col(a.swapaxes(2, 3), k, s)

    monkeypatch.setattr(H, "im2col", transposed)
    r = H.check(0)
    assert r["rows"]["conv.w"][1] > H.RTOL and r["rows"]["conv.w"][0] < H.RTOL


@pytest.fixture(scope="module")
def text():
    return " ".join(formats.get("text").document(H.homework_document()).split())


def test_the_document_states_the_check(text):
    assert "1,446,030 in all" in text and "DIFFER" not in text
    assert text.count("scalar form agrees, vector form agrees") == 8
    assert "(c−1)·144 + (m−1)·12 + l" in text
    assert "(20, 12, 12) ↦ 2880" in text


def test_a_slip_reaches_the_document(monkeypatch):
    monkeypatch.setattr(H, "flat_index", lambda c, m, l, side=12: (c - 1) * 144 + (l - 1) * 12 + m)
    doc = formats.get("text").document(H.homework_document())
    assert "DIFFER" in doc


def test_the_printed_scalar_forms_are_problem_12s_proved_derivation_at_its_instance():
    """The same scalar-form code, at a reduced instance, against the lenet op's derivation
    (proved: SymPy's derivative of the whole network) evaluated at the same numbers."""
    from derivgrad import derive
    from derivgrad.documents.instance import attach, evaluate, substitutions

    d = derive("lenet", input=(6, 6), kernel=3, filters=2, hidden=1, classes=2, label=2)
    for seed in range(50):  # continuous values (no tie, no ReLU at 0), the hidden unit active
        rng = np.random.default_rng(seed)
        values = {k: 0.3 * rng.standard_normal(v.shape) for k, v in d.input_arrays.items()}
        params = {
            "conv": dict(w=values["w"][:, None], b=values["b"]),
            "fc1": dict(w=values["W1"], b=values["b1"]),
            "fc2": dict(w=values["W2"], b=values["b2"]),
        }
        got = H.scalar_forms(values["x"][None, None], np.array([1]), params)
        if np.all(got["conv"]["w"] != 0):
            break
    d = attach(d, values)
    subs = substitutions(d)
    names = {"w": ("conv", "w"), "b": ("conv", "b"), "W1": ("fc1", "w"), "b1": ("fc1", "b")}
    names.update({"W2": ("fc2", "w"), "b2": ("fc2", "b")})
    for name, (layer, p) in names.items():
        exact = np.array(evaluate(d.grad_array(name), subs), dtype=np.float64)
        assert np.any(exact != 0), name
        np.testing.assert_allclose(got[layer][p].reshape(exact.shape), exact, rtol=1e-10)
    loss = float(evaluate(d.output_array, subs)[0])
    assert abs(got["loss"] - loss) < 1e-12 * max(1.0, abs(loss))
