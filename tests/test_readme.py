"""The code the documentation shows runs (issue 26, item 9): every ```python block of
README.md and ARCHITECTURE.md, self-contained, in a fresh process in an empty directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks() -> list[tuple[str, str]]:
    found = []
    for doc in ("README.md", "ARCHITECTURE.md"):
        text = (ROOT / doc).read_text()
        for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
            line = text.count("\n", 0, m.start()) + 1
            found.append((f"{doc}:{line}", m.group(1)))
    return found


BLOCKS = _blocks()


def test_the_readme_has_code_to_run():
    assert any(where.startswith("README.md") for where, _ in BLOCKS)


@pytest.mark.parametrize("where, code", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_documented_code_runs(where, code, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DERIVGRAD_NO_WARM": "1"}
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"{where}:\n{r.stderr[-3000:]}"
