"""Parameters of ``derive``/``shapes`` from the op declarations: bad values are one-line
errors that name the option, and the size checks price a request before building it."""

import subprocess
import sys

import pytest

import derivgrad
from derivgrad.errors import ParamError


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "derivgrad", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["derive", "conv1d", "--input", "3x3"], ["input", "whole number", "3x3"]),
        (["derive", "relu", "--input", "3x3"], ["relu does not take --input", "--features"]),
        (["derive", "nosuch"], ["unknown op", "conv2d"]),
        (["shapes", "conv2d", "--kernel", "0"], ["kernel", ">= 1"]),
        (["shapes", "conv2d", "--stride", "0"], ["stride", ">= 1"]),
        (["shapes", "conv2d", "--kernel", "33"], ["33x33", "does not fit"]),
        (["shapes", "conv2d", "--channels", "-3"], ["channels"]),
        (["shapes", "relu"], ["no shape report", "conv2d"]),
    ],
)
def test_bad_parameters_are_one_line_errors(args, words):
    r = _cli(*args)
    assert r.returncode == 2, r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: derivgrad.derive(None), ["op name must be a string"]),
        (lambda: derivgrad.derive("batchnorm2d", eps=True), ["eps", "True"]),
        (lambda: derivgrad.derive("batchnorm2d", eps=float("inf")), ["eps"]),
        (lambda: derivgrad.derive("conv1d", input="3x3"), ["input", "whole number"]),
    ],
)
def test_library_errors_name_the_argument(call, words):
    with pytest.raises(ParamError) as e:
        call()
    for w in words:
        assert w in str(e.value)


def test_a_huge_lenet_is_priced_not_built():
    r = subprocess.run(
        [sys.executable, "-c", _PEAK, "shapes", "lenet", "--hidden", "100000000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    total = int(r.stdout.splitlines()[-1].split()[-1].replace(",", ""))
    # conv 20·25+20, fc1 2880·h+h, fc2 h·10+10, for h = 10⁸ hidden units
    h = 100_000_000
    assert total == 520 + 2880 * h + h + 10 * h + 10
    # 2.9·10¹¹ float32 weights would be 1.2 TB: the process must stay far below that
    peak_kib = int(r.stderr.strip().splitlines()[-1])
    assert peak_kib < 1_000_000, f"peak RSS {peak_kib} KiB"


# The child's own peak (bench_epoch.peak_rss_mb: VmHWM, not the ru_maxrss that Linux
# carries over from a forked parent), in KiB.
_PEAK = (
    "import sys; from derivgrad.cli import main; sys.argv[0] = 'derivgrad'; "
    "rc = main(sys.argv[1:]); sys.stdout.flush(); "
    "from derivgrad.training.bench_epoch import peak_rss_mb; "
    "print(round(peak_rss_mb() * 1024), file=sys.stderr); sys.exit(rc)"
)


def test_no_bias_switch_reaches_the_op():
    r = _cli("derive", "conv2d", "--no-bias", "--no-verify", "--format", "markdown")
    assert r.returncode == 0, r.stderr
    assert "b_{1}" not in r.stdout and "w_{1,1}" in r.stdout
