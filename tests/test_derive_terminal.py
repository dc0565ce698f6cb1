"""``derivgrad derive`` picks its format from what it writes to: text on a terminal, the -o
file's extension, LaTeX into a pipe; --format overrides all of them."""

import json
import os
import pty
import subprocess
import sys


def _on_terminal(*args: str) -> str:
    """The command's output when its stdout and stderr are a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "derivgrad", *args], stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the other end closed: the command is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "derivgrad", *args], capture_output=True, text=True, timeout=120
    )


def test_a_terminal_gets_text_and_a_pipe_gets_latex():
    shown = _on_terminal("derive", "conv1d")
    assert "\\documentclass" not in shown and "∂L/∂x" in shown
    piped = _run("derive", "conv1d")
    assert piped.returncode == 0 and piped.stdout.startswith("\\documentclass")


def test_the_output_extension_chooses_the_format(tmp_path):
    out = tmp_path / "doc.txt"
    r = _run("derive", "conv1d", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "\\frac" not in out.read_text() and "∂L/∂x" in out.read_text()


def test_json_by_extension_and_format_overrides(tmp_path):
    out = tmp_path / "d.json"
    assert _run("derive", "conv1d", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text())["op"] == "conv1d"
    md = tmp_path / "d.md"
    assert _run("derive", "conv1d", "--format", "latex", "-o", str(md)).returncode == 0
    assert md.read_text().startswith("\\documentclass")
