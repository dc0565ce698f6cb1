"""Snapshot of the documents: every op's default worked solution and the worked-problems
collection, byte for byte.  A refactoring must leave them unchanged; a deliberate change to a
document regenerates them (``python tests/test_golden.py``) and the diff is reviewed."""

import sys
from pathlib import Path

import pytest

import derivgrad
from derivgrad.documents.render import render
from derivgrad.documents.worked import document
from derivgrad.registry import OPS

GOLDEN = Path(__file__).parent / "golden"


def _verified(d):
    d.verify()  # what `derivgrad derive NAME` does by default
    return d


def _current() -> dict[str, str]:
    docs = {name: render(_verified(derivgrad.derive(name)), "latex") for name in OPS}
    docs["worked-problems"] = document("latex")
    return docs


@pytest.fixture(scope="module")
def current():
    return _current()


@pytest.mark.parametrize("name", [*OPS, "worked-problems"])
def test_document_is_unchanged(current, name):
    path = GOLDEN / f"{name}.tex"
    assert path.exists(), f"no snapshot for {name}: run python tests/test_golden.py"
    expected = path.read_text()
    got = current[name]
    if got != expected:
        diff = next(i for i, (a, b) in enumerate(zip(got, expected + "\0")) if a != b)
        pytest.fail(
            f"{name}: document differs from tests/golden/{name}.tex at character {diff}: "
            f"{got[max(0, diff - 60) : diff + 60]!r}"
        )


if __name__ == "__main__":
    for name, text in _current().items():
        (GOLDEN / f"{name}.tex").write_text(text)
    print(f"wrote {len(OPS) + 1} snapshots to {GOLDEN}", file=sys.stderr)
