"""Every malformed definition is a one-line ``ValueError`` naming the statement and the column
(never a traceback from SymPy or Numba)."""

from __future__ import annotations

import pytest

import derivgrad


def _error(spec, **shapes):
    with pytest.raises(ValueError) as info:
        derivgrad.define(spec, **shapes)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def test_unknown_tensor():
    msg = _error("y[i] = x[i] * z[i]", x=(3,))
    assert msg.startswith("statement 1 ('y[i] = x[i] * z[i]'), column 15: unknown tensor 'z'")


def test_index_on_the_left_missing_on_the_right():
    msg = _error("y[i, j] = x[i]", x=(3,))
    assert msg.startswith("statement 1 ('y[i, j] = x[i]'), column 6:")
    assert "index 'j' on the left does not appear on the right" in msg


def test_index_on_the_right_missing_on_the_left_of_an_elementwise_statement():
    msg = _error("y[i] = x[i, j]", x=(3, 2))
    assert "column 13" in msg and "use '+=' to sum over it" in msg


def test_non_affine_subscript():
    msg = _error("y[i] += x[i * u] * w[u]", x=(9,), w=(3,))
    assert msg.startswith("statement 1 ('y[i] += x[i * u] * w[u]'), column 11:")
    assert "subscript 'i * u' is not affine" in msg


def test_shape_of_the_wrong_rank():
    msg = _error("mu[n] += x[n, d]\ny[n, d] = x[n, d] - mu[n]", x=(3,))
    assert msg.startswith("statement 1 ('mu[n] += x[n, d]'), column 10:")
    assert "x is read with 2 subscript(s) but its shape has 1 axis" in msg


def test_empty_range():
    msg = _error("y[i] += x[i + u] * w[u]", x=(3,), w=(5,))
    assert msg.startswith("statement 1 ('y[i] += x[i + u] * w[u]'), column")
    assert "index 'i' has an empty range [0, -1)" in msg


def test_reused_name_for_a_tensor():
    msg = _error("x[i] = x[i] * 2", x=(3,))
    assert msg.startswith("statement 1 ('x[i] = x[i] * 2'), column 1: 'x' is an input")


def test_reused_name_for_a_tensor_and_an_index():
    msg = _error("y[x] = x[x]", x=(3,))
    assert "column 8" in msg and "'x' is both an index and a tensor" in msg


def test_a_tensor_defined_twice():
    msg = _error("y[i] = x[i]\ny[i] = x[i] * 2", x=(3,))
    assert msg.startswith("statement 2 ('y[i] = x[i] * 2'), column 1: 'y' is defined above")


def test_out_of_bounds_read_names_the_statement():
    msg = _error("y[i] = x[i] + x[i + 1]", x=(4,))
    assert msg.startswith("statement 1 ('y[i] = x[i] + x[i + 1]'), column 15:")
    assert "reads [1, 4] outside [0, 3]" in msg


def test_syntax_error_and_unknown_function():
    assert "column 9: syntax error" in _error("y[i] = x[i", x=(3,))
    assert "unknown function 'cosh'" in _error("y[i] = cosh(x[i])", x=(3,))
    assert "len() takes one index name" in _error("y[i] = x[i] / len(2)", x=(3,))


def test_shape_for_a_tensor_never_read_and_bad_shapes():
    assert "a shape was given for w" in _error("y[i] = x[i]", x=(3,), w=(2,))
    assert "tuple of positive ints" in _error("y[i] = x[i]", x=(0,))
    assert "tuple of positive ints" in _error("y[i] = x[i]", x="3")


def test_an_index_whose_range_nothing_determines():
    msg = _error("y[n, i] += x[n, 2*i + u]", x=(2, 8))
    assert "cannot infer the range of index 'i'" in msg
    # fixing the window's range resolves it
    op = derivgrad.define("y[n, i] += x[n, 2*i + u]", ranges={"u": 2}, x=(2, 8))
    assert op.example_ranges.index[0]["i"] == (0, 4)


def test_an_empty_definition():
    assert "no statement" in _error("  \n# only a comment\n", x=(3,))
