"""A numeric instance's kernel check says what happened: values whose exact results are beyond
float64 (1e308 squared) are reported as not compared, kernels that give inf or NaN where the
exact values are finite are reported as such; neither reads as agreement "to within nan", and
the JSON stays valid (no NaN or Infinity in it)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from derivgrad import derive
from derivgrad.documents.instance import failed_checks, kernel_comparison, value_names
from derivgrad.documents.render import render
from derivgrad.formats.json import schema
from derivgrad.registry import get


def _huge(op: str) -> dict:
    d = derive(op)
    shapes = {**d.input_arrays, "upstream": d.upstream_array}
    return {k: np.full(shapes[k].shape, 1e308).tolist() for k in value_names(d)}


def test_an_overflowing_instance_is_reported_not_agreed():
    d = derive("linear", values=_huge("linear"))
    report = kernel_comparison(d)
    # y = W x + b at 1e308 is about 1e616: no float64 holds it
    assert "beyond float64" in report["output"]
    for k, v in report.items():
        assert isinstance(v, str) or math.isfinite(v), (k, v)
    text = render(d, "text").replace("\n", " ")
    assert "within nan" not in text
    assert "could not confirm" in text and "give the same arrays" not in text
    data = json.loads(render(d, "json"), parse_constant=pytest.fail)  # no NaN, no Infinity
    assert data["kernel_check"] == report
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(data, schema())


def test_kernels_that_give_nan_are_a_failure_not_a_tolerance(monkeypatch):
    d = derive("relu", features=2, values={"z": [1, -1], "upstream": [1, 1]})
    op = get("relu")
    real = op.kernel

    def broken(d, floats, upstream):
        y, grads = real(d, floats, upstream)
        return np.full_like(np.asarray(y, dtype=float), np.nan), grads

    monkeypatch.setattr(type(op), "kernel", lambda self, *a: broken(*a))
    report = kernel_comparison(d)
    assert failed_checks(report) == {"output": report["output"]}
    assert "the kernels give nan" in report["output"]
    text = render(d, "text").replace("\n", " ")
    assert "could not confirm" in text and "give the same arrays" not in text
