"""Every example runs."""

import subprocess
import sys
from pathlib import Path

EX = Path(__file__).resolve().parents[1] / "examples"


def run(args, tmp_path):
    r = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_derive_conv2d(tmp_path):
    out = run([EX / "derive_conv2d.py", tmp_path], tmp_path)
    assert "proved equal to the chain rule: True" in out and (tmp_path / "conv2d.tex").exists()


def test_worked_problems(tmp_path):
    run([EX / "worked_problems.py", tmp_path], tmp_path)
    tex = (tmp_path / "worked_problems.tex").read_text()
    from derivgrad.documents.worked import problems

    # one section per worked problem (the thirteen, file 004's 7b, the lecture's 14 and its
    # errata, ...) after the map of where each comes from
    assert r"\tableofcontents" in tex and tex.count(r"\section{") == len(problems()) + 1


def test_train_lenet(tmp_path):
    out = run(
        [EX / "train_lenet.py", "--epochs", "1", "--limit", "1000", "--out", tmp_path], tmp_path
    )
    assert "test accuracy" in out and (tmp_path / "lenet_curves.png").exists()


def test_check_your_kernel(tmp_path):
    out = run([EX / "check_your_kernel.py"], tmp_path)
    assert "my_conv2d_backward:" in out and "PASS" in out.splitlines()[0]
    assert "caught:" in out


def test_check_your_depthwise_conv(tmp_path):
    out = run([EX / "check_your_depthwise_conv.py"], tmp_path)
    assert "derived and proved: True" in out
    assert "my_depthwise_backward: PASS" in out and "buggy_backward: FAIL" in out
    assert "caught: my_depthwise: gradient of x differs" in out
