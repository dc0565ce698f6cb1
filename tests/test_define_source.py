"""A definition's text reaches the generated kernel module only as comment lines (issue 31,
item 9): whatever a comment of the definition holds (escapes such as ``\\N``, triple quotes,
backslashes at the end), the module compiles and holds no statement the definition did not
produce."""

from __future__ import annotations

import ast
import os
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from derivgrad.notation import define

BASE = "y[i] = x[i] * 2"
# anything a comment may hold: every character but the line breaks that end it (Python's
# and str.splitlines', by which definitions are cut into statements)
BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
COMMENT = st.text(
    st.characters(blacklist_characters=BREAKS, blacklist_categories=("Cs",)), max_size=40
)


@settings(max_examples=40, deadline=None)
@given(comment=COMMENT, tail=st.sampled_from(['"""', "\\", "\\N", "'''", '"', "\\u12"]))
def test_the_generated_module_compiles_whatever_a_comment_holds(comment, tail):
    op = define(f"{BASE}  # {comment}{tail}", x=(3,))
    src = op.source()
    clean = define(BASE, x=(3,)).source()
    # same statements as the definition without its comment: the text added nothing
    assert ast.dump(ast.parse(src)) == ast.dump(ast.parse(clean))


def test_a_cache_others_can_write_is_never_imported_from(tmp_path, monkeypatch, capsys):
    # a planted module under the definition's hash name would run as the user: a directory
    # others can write is not used (compiled in memory), an entry others can write is
    # discarded and rebuilt; each with one warning line, and the layer still works
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("DERIVGRAD_CACHE_DIR", str(shared))
    op = define("y[i] = x[i] * 3", x=(3,))
    planted = shared / f"dg_{op.key}.py"
    for mode, path in [(0o777, shared), (0o666, planted)]:
        shared.chmod(0o755)
        planted.write_text("raise SystemExit('planted code ran')\n")
        planted.chmod(0o644)
        path.chmod(mode)
        sys.modules.pop(f"derivgrad_define_{op.key}", None)
        capsys.readouterr()
        fresh = define("y[i] = x[i] * 3", x=(3,))  # an op holds its kernels once loaded
        np.testing.assert_array_equal(fresh.forward(x=np.arange(3.0)), [0.0, 3.0, 6.0])
        assert "warning" in capsys.readouterr().err
    shared.chmod(0o700)


def test_a_new_cache_directory_is_private_whatever_the_umask(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVGRAD_CACHE_DIR", str(tmp_path / "fresh"))
    op = define("y[i] = x[i] * 5", x=(3,))
    sys.modules.pop(f"derivgrad_define_{op.key}", None)  # loaded by another test: load anew
    old = os.umask(0o002)  # a user-private-group system: new directories group-writable
    try:
        op.kernels()
    finally:
        os.umask(old)
    assert (tmp_path / "fresh").stat().st_mode & 0o077 == 0
