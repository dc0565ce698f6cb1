"""``derivgrad derive --define`` and ``derivgrad check --define`` (in-process, through
``derivgrad.cli.main``)."""

from __future__ import annotations

import pytest

from derivgrad.cli import main

SPEC = "y[n, c, i, j] += x[n, c, 2*i + u, 2*j + v] * w[c, u, v]"


def test_derive_a_definition_in_every_format(capsys):
    for fmt in ("latex", "markdown", "text"):
        rc = main(
            [
                "derive",
                "--define",
                SPEC,
                "--shape",
                "x=1x2x5x5",
                "--shape",
                "w=2x3x3",
                "--format",
                fmt,
            ]
        )
        assert rc in (0, None)
        out = capsys.readouterr().out
        assert "General-size rules in index notation" in out
        if fmt != "text":  # text prints the mathematics in Unicode
            assert "- 2 i + p" in out


def test_derive_reads_a_definition_file_with_statements_on_lines(tmp_path, capsys):
    f = tmp_path / "rms.dg"
    f.write_text("ms[n] += x[n, d]**2 / len(d)\ny[n, d] = x[n, d] / sqrt(ms[n] + 1e-6)\n")
    rc = main(["derive", "--define", f"@{f}", "--shape", "x=2x3", "--format", "text"])
    assert rc in (0, None)
    assert "ms" in capsys.readouterr().out


def test_check_a_definition(capsys):
    rc = main(
        [
            "check",
            "--define",
            "y[n, d] = x[n, d] * sigmoid(x[n, d])",
            "--shape",
            "x=2x3",
            "--examples",
            "2",
        ]
    )
    assert rc == 0
    assert "pass" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(capsys):
    assert main(["derive", "--define", "y[i] = x[i * i]", "--shape", "x=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("derivgrad derive: error: statement 1") and "\n" not in err
    assert main(["derive", "--define", SPEC, "--shape", "x=2by3"]) == 2
    assert "NAME=AxB" in capsys.readouterr().err
    assert main(["derive", "--define", SPEC]) == 2
    assert "--shape" in capsys.readouterr().err
    assert main(["derive", "conv2d", "--define", SPEC, "--shape", "x=1x1x5x5"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["derive", "--define", "@/nonexistent/layer.dg", "--shape", "x=3"]) == 2
    assert "cannot read" in capsys.readouterr().err


def _failure(text: str) -> tuple[str, str]:
    """(the failure message without the op's name, the smallest failing case's command)."""
    lines = text.splitlines()
    cmd = [x.split("smallest failing case: ", 1)[1] for x in lines if "smallest failing" in x]
    i = next(i for i, x in enumerate(lines) if "smallest failing" in x)
    return lines[i - 1].split(": ", 1)[1], cmd[0]


def test_a_failing_check_prints_a_shell_command_that_fails_the_same_way(capsys):
    import os
    import subprocess
    import sys
    from pathlib import Path

    # sqrt of standard normal inputs: NaN, a failure of the definition itself; two statements
    # and a fixed range, so that the command must carry all of them, quoted for a shell
    spec = "s[i] += x[i + u] - 0.5\ny[i] = sqrt(s[i])"
    argv = ["check", "--define", spec, "--shape", "x=5", "--range", "u=2", "--examples", "3"]
    assert main(argv) == 1
    message, cmd = _failure(capsys.readouterr().out)
    assert cmd.startswith("derivgrad check --define '") and "--range u=2" in cmd
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    rerun = subprocess.run(
        f"{sys.executable} -m derivgrad {cmd.removeprefix('derivgrad ')}",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    assert rerun.returncode == 1, rerun.stderr
    again, cmd2 = _failure(rerun.stdout)
    assert again == message
    # the failing shapes are the rerun's example, tried first: the same smallest case
    assert cmd2 == cmd


def test_range_takes_a_count_or_low_and_high(capsys):
    from derivgrad.commands._define_arguments import defined_op
    from derivgrad.errors import UsageError

    def op(r):
        import argparse

        a = argparse.Namespace(define="y[i] += x[i + u]", shape=["x=6"], range=[r])
        return defined_op(a)

    assert op("u=2").fixed == {"u": (0, 2)}
    assert op("u=1:3").fixed == {"u": (1, 3)}
    for bad in ("u=1:2:3", "u=a", "=2"):
        with pytest.raises(UsageError, match="INDEX=LO:HI"):
            op(bad)
