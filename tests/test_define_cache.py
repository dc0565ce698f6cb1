"""The kernel cache of defined layers cannot poison a layer (issue 26, item 3): the key is
the whole definition text and the versions; the module holds user text only as data; a
damaged entry is rebuilt, an unusable or untrusted directory is not used, each with one
warning line, and none of these becomes the layer's failure."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import derivgrad
from derivgrad.notation import op as op_module
from derivgrad.notation.parse import DefineError

SPEC = "y[i] = x[i] * 31"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("DERIVGRAD_CACHE_DIR", str(d))
    op_module._WARNED.clear()
    return d


def _fresh(spec: str = SPEC) -> derivgrad.notation.DefinedOp:
    """A new op object whose module is not loaded in this process (as in a new process)."""
    op = derivgrad.define(spec, x=(3,))
    sys.modules.pop(f"derivgrad_define_{op.key}", None)
    return op


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("derivgrad: warning:")]


@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0\n\r")))
def test_any_comment_stays_data_in_the_generated_module(comment):
    spec = f"{SPEC}  # {comment}\n# {comment[::-1]}"
    try:
        op = derivgrad.define(spec, x=(3,))
    except DefineError:
        assume(False)
    src = op.source()
    tree = ast.parse(src)  # it parses, whatever the comment holds
    # the definition is there to read, each line a comment with Python's escapes
    lines = src.splitlines()
    for line in spec.strip().splitlines():
        assert f"#     {repr(line)[1:-1]}" in lines
    # one statement only: the docstring, imports, the generated functions and nothing else
    assert all(
        isinstance(n, (ast.Expr, ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign))
        for n in tree.body
    )
    assert not any(isinstance(n, ast.Expr) for n in tree.body[1:])


def test_the_key_covers_comments_and_the_versions(monkeypatch):
    a = derivgrad.define(SPEC, x=(3,))
    assert derivgrad.define(SPEC + "  # C:\\Users\\me", x=(3,)).key != a.key
    assert derivgrad.define(SPEC, x=(3,)).key == a.key
    monkeypatch.setattr(op_module.numba, "__version__", "0.0.0")
    assert derivgrad.define(SPEC, x=(3,)).key != a.key
    monkeypatch.undo()
    monkeypatch.setattr(op_module, "__version__", "0.0.0")
    assert derivgrad.define(SPEC, x=(3,)).key != a.key


def test_a_backslash_in_a_comment_works_and_does_not_poison_the_clean_spec(cache):
    x = np.arange(3.0)
    for spec in (SPEC + "  # C:\\Users\\me", SPEC):
        assert _fresh(spec).forward(x=x).tolist() == [0.0, 31.0, 62.0]


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[: len(t) // 2],  # truncated
        lambda t: t.replace("import math", "import math +", 1),  # unimportable, unsealed
        lambda t: '"""C:\\Users"""\n' + t,  # the old bug's module, sealed by no one
        lambda t: "\xff\xfe",
        lambda t: "",
    ],
)
def test_a_damaged_entry_is_discarded_and_rebuilt_with_one_warning(cache, capsys, damage):
    op = _fresh()
    op.forward(x=np.ones(3))
    path = cache / f"dg_{op.key}.py"
    good = path.read_bytes()
    path.write_bytes(damage(good.decode()).encode("latin-1"))
    capsys.readouterr()
    again = _fresh()
    assert again.forward(x=np.arange(3.0)).tolist() == [0.0, 31.0, 62.0]
    (line,) = _warnings(capsys.readouterr().err)
    assert f"discarded the damaged cache entry {path}" in line
    assert path.read_bytes() == good  # rebuilt, whole


def test_a_failed_import_leaves_nothing_in_sys_modules():
    with pytest.raises(ImportError):
        op_module._execute("derivgrad_define_broken", "import no_such_module_xyz\n", None)
    assert "derivgrad_define_broken" not in sys.modules


@pytest.mark.parametrize("fault", ["a file", "under a file", "read-only", "writable by others"])
def test_an_unusable_cache_directory_compiles_in_memory_with_one_warning(
    tmp_path, monkeypatch, capsys, fault
):
    d = tmp_path / "cache"
    d.mkdir()
    if fault == "a file":
        d.rmdir()
        d.write_text("")
    elif fault == "under a file":
        (tmp_path / "f").write_text("")
        d = tmp_path / "f" / "cache"
    elif fault == "read-only":  # root ignores modes: the write probe is made to fail
        monkeypatch.setattr(op_module, "writable", lambda p: False)
    else:
        os.chown(d, 65534, 65534)
        d.chmod(0o777)
    monkeypatch.setenv("DERIVGRAD_CACHE_DIR", str(d))
    op_module._WARNED.clear()
    op = _fresh("y[i] = x[i] * 29")
    assert op.forward(x=np.arange(3.0)).tolist() == [0.0, 29.0, 58.0]
    assert op.backward(np.ones(3), x=np.ones(3))["x"].tolist() == [29.0] * 3
    (line,) = _warnings(capsys.readouterr().err)
    assert f"the kernel cache {d} " in line and "compiling the kernels" in line
    assert not list(tmp_path.rglob("dg_*.py"))


def test_a_planted_module_in_a_shared_directory_is_never_run(tmp_path, monkeypatch, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chown(shared, 65534, 65534)
    shared.chmod(0o777)
    monkeypatch.setenv("DERIVGRAD_CACHE_DIR", str(shared))
    op_module._WARNED.clear()
    op = _fresh("y[i] = x[i] * 23")
    pwned = tmp_path / "pwned"
    plant = f"open({str(pwned)!r}, 'w').close()\n"
    (shared / f"dg_{op.key}.py").write_text(op_module._sealed(plant))  # the key is predictable
    assert op.forward(x=np.ones(3)).tolist() == [23.0] * 3
    assert not pwned.exists()
    assert len(_warnings(capsys.readouterr().err)) == 1


def test_check_on_the_command_line_never_blames_the_layer_for_the_cache(tmp_path):
    (tmp_path / "a_file").write_text("")
    env = {**os.environ, "DERIVGRAD_CACHE_DIR": str(tmp_path / "a_file"), "DERIVGRAD_NO_WARM": "1"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "derivgrad",
            "check",
            "--define",
            SPEC + "  # C:\\Users\\me",
            "--shape",
            "x=3",
            "--examples",
            "3",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout and "pass" in r.stdout
    assert len(_warnings(r.stderr)) == 1
