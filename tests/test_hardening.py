"""Issue 17's findings, one test (family) each: nothing lost, nothing wrong, nothing
unbounded, no traceback.  Findings 1 and 5 have their own files (test_interrupt.py,
test_gradcheck_nan.py); 10 belongs to ``derive``'s size guard."""

import errno
import gzip
import http.server
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import derivgrad.training.train as T
from derivgrad import atomic, cli
from derivgrad import kernels as K
from derivgrad.errors import CheckpointError, DataError, ParamError, UsageError
from derivgrad.training import checkpoint as ckpt
from derivgrad.training import data as D
from derivgrad.training.predict import as_images

quiet = dict(log=lambda s: None, progress=False)
TINY = dict(epochs=1, limit=64, batch_size=32, hidden=16, filters=4)


def tiny(path, **kw):
    return T.config(**{**TINY, "checkpoint": str(path), **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small SGD checkpoint to tamper with."""
    path = tmp_path_factory.mktemp("ck") / "c.npz"
    T.train(tiny(path), **quiet)
    return path


def run_cli(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


# 2. an existing checkpoint is never replaced without --overwrite ---------------------------


def test_an_existing_checkpoint_is_kept_unless_overwrite_is_given(tmp_path, trained):
    path = tmp_path / "keep.npz"
    path.write_bytes(trained.read_bytes())
    before = path.read_bytes()
    with pytest.raises(UsageError, match="--overwrite"):
        T.train(tiny(path, seed=5), **quiet)
    assert path.read_bytes() == before
    T.train(tiny(path, seed=5, overwrite=True), **quiet)
    assert path.read_bytes() != before
    with pytest.raises(UsageError, match="pick one"):
        tiny(path, resume=True, overwrite=True)


# 3. atomic writes: through symlinks, never torn, no orphans --------------------------------


def test_a_symlinked_checkpoint_updates_its_target(tmp_path):
    target = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    T.train(tiny(link, overwrite=True), **quiet)
    assert link.is_symlink() and target.is_file()
    assert ckpt.read_meta(link)["epoch"] == 1


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "doc.tex"
    path.write_text("the valid old document")

    def full_disk(f):
        f.write(b"half a docu")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic.write_atomic(path, full_disk)
    assert path.read_text() == "the valid old document"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.tex"]


def test_orphan_temporaries_of_killed_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)  # fmt: skip
    pid = int(dead.stdout)  # a process that has exited
    orphan = tmp_path / f".c.npz.{pid}.tmp"
    orphan.write_bytes(b"x" * 1000)
    alive = tmp_path / f".c.npz.{os.getppid()}.tmp"  # a live writer's file is left alone
    alive.write_bytes(b"y")
    atomic.write_bytes_atomic(tmp_path / "c.npz", b"new")
    assert not orphan.exists() and alive.exists()
    assert (tmp_path / "c.npz").read_bytes() == b"new"


# 4. every output path is checked before the first step -------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(plot="nodir/p.png"), "does not exist"),
        (dict(plot="p.txt"), "unsupported format"),
        (dict(plot="p_noext"), "no file extension"),
        (dict(checkpoint="."), "is a directory"),
        (dict(checkpoint="nodir/c.npz"), "does not exist"),
    ],
)
def test_bad_output_paths_fail_before_training(tmp_path, monkeypatch, kw, match):
    monkeypatch.chdir(tmp_path)
    logged = []
    with pytest.raises(UsageError, match=match):
        T.train(T.config(**{**TINY, **kw}), log=logged.append, progress=False)
    assert logged == []  # refused before the data was even loaded


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_checkpoint_directory_fails_before_training(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UsageError, match="cannot write"):
            T.train(tiny(ro / "c.npz"), **quiet)
    finally:
        ro.chmod(0o700)


def test_an_unwritable_checkpoint_place_fails_before_training(tmp_path, monkeypatch):
    # the probe that catches read-only mounts and permissions, made to fail as they would
    # (root writes through permissions, so the test cannot rely on chmod alone)
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    logged = []
    with pytest.raises(UsageError, match="cannot write in .*Read-only file system"):
        T.train(tiny(tmp_path / "c.npz"), log=logged.append, progress=False)
    assert logged == []


# 6. predict: no silent reshaping, no NaN, valid JSON ---------------------------------------


@pytest.mark.parametrize("shape", [(56, 56), (28, 84), (28, 28, 3), (4, 784), (0,)])
def test_predict_refuses_images_that_are_not_28x28(shape):
    with pytest.raises(DataError, match="28x28"):
        as_images(np.zeros(shape, np.uint8))


@pytest.mark.parametrize(
    "a, match",
    [
        (np.full((28, 28), np.nan), "NaN"),
        (np.full((28, 28), 3.0), r"\[0, 1\]"),
        (np.full((28, 28), 300), "0..255"),
        (np.zeros((28, 28), complex), "dtype"),
        (np.ma.masked_array(np.zeros((28, 28))), "masked"),
    ],
)
def test_predict_refuses_bad_pixels(a, match):
    with pytest.raises(DataError, match=match):
        as_images(a)


def test_predict_command_on_png_and_npy(tmp_path, trained, capsys):
    import matplotlib.image

    big = tmp_path / "big.png"
    matplotlib.image.imsave(big, np.zeros((56, 56)), cmap="gray")
    ok = tmp_path / "ok.png"
    matplotlib.image.imsave(ok, np.eye(28), cmap="gray")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image at all, but long enough")
    # a 20000x20000 header on no pixel data: refused from the header, nothing decoded
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (20000).to_bytes(4, "big") * 2)
    np.save(tmp_path / "three.npy", np.zeros((28, 28, 3), np.uint8))
    for f, match in [
        (big, "56x56"),
        (empty, "empty"),
        (text, "not a PNG"),
        (huge, "20000x20000"),
        (tmp_path / "three.npy", "shape"),
    ]:
        rc, out, err = run_cli(capsys, "predict", str(trained), str(f))
        assert rc == 2 and match in err and out == "", (f, err)
    rc, out, err = run_cli(capsys, "predict", str(trained), str(ok))
    assert rc == 0, err
    rec = json.loads(out)
    assert rec["index"] == 0 and 0 <= rec["label"] <= 9 and 0 < rec["probability"] <= 1


def test_predict_batches_and_agrees_with_one_batch(trained, monkeypatch):
    x = D.load()["test_images"][:25]
    whole = T.predict(trained, x)
    import derivgrad.training.predict as P

    monkeypatch.setattr(P, "BATCH", 7)
    # BLAS blocks a GEMM differently per batch size: equal up to float32 rounding
    np.testing.assert_allclose(T.predict(trained, x), whole, rtol=1e-5, atol=1e-7)


# 7. sizes that mean nothing are refused ----------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(limit=0), "--limit"),
        (dict(limit=-5), "--limit"),
        (dict(kernel=28), "kernel 28"),
        (dict(kernel=0), "--kernel"),
        (dict(epochs=0), "--epochs"),
        (dict(batch_size=True), "--batch-size"),
        (dict(seed=-1), "--seed"),
        (dict(momentum=float("nan")), "--momentum"),
        (dict(lr=float("inf")), "--lr"),
        (dict(lr=0.0), "--lr"),
        (dict(weight_decay=-1.0), "--weight-decay"),
        (dict(optimizer="rmsprop"), "--optimizer"),
        (dict(hidden=400_000), "GiB"),
        (dict(filters=10**23), "GiB"),
    ],
)
def test_bad_settings_are_refused_naming_the_option(kw, match):
    with pytest.raises((ParamError, UsageError), match=match):
        T.config(**kw)


def test_a_batch_larger_than_the_data_is_refused_not_zero_steps():
    with pytest.raises(ParamError, match="--batch-size 64 is larger than the 10"):
        T.train(T.config(limit=10, hidden=16), **quiet)


# 8. resuming with settings that change the state's meaning -----------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(optimizer="adam"), "--optimizer 'sgd'"),
        (dict(batch_size=16), "--batch-size 32"),
        (dict(seed=1), "--seed 0"),
        (dict(normalize=True), "--normalize False"),
        (dict(momentum=0.5), "--momentum 0.9"),
        (dict(limit=96), "--limit 64"),
    ],
)
def test_resume_refuses_a_setting_that_changes_the_state(tmp_path, trained, kw, match):
    path = tmp_path / "c.npz"
    path.write_bytes(trained.read_bytes())
    with pytest.raises(CheckpointError, match=match):
        T.train(tiny(path, resume=True, epochs=2, **kw), **quiet)


def test_resume_accepts_the_documented_changes(tmp_path, trained):
    path = tmp_path / "c.npz"
    path.write_bytes(trained.read_bytes())
    m, _ = T.train(tiny(path, resume=True, epochs=2, lr=0.005, schedule="cosine"), **quiet)
    assert [h["epoch"] for h in m["history"]] == [1, 2]


# 9. no silent casts ------------------------------------------------------------------------


def _sgd_args(p):
    return (p, np.zeros_like(p), np.zeros_like(p), 0.1)


@pytest.mark.parametrize(
    "p, err",
    [
        (np.ones(4, np.int64), TypeError),
        (np.ones(4, np.complex128), TypeError),
        (np.ones(4, np.float16), TypeError),
        (np.ones(4, object), TypeError),
        (np.ma.masked_array(np.ones(4), mask=[0, 1, 0, 0]), TypeError),
    ],
)
def test_optimizer_updates_refuse_arrays_they_would_cast(p, err):
    with pytest.raises(err, match="sgd_update"):
        K.sgd_update(*_sgd_args(p))
    with pytest.raises(err, match="adam_update"):
        K.adam_update(p, np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), 0.1)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(betas=(1, 0.999)), r"betas\[0\]"),
        (dict(betas=(0.9, 1.0)), r"betas\[1\]"),
        (dict(betas=(0.9,)), "pair"),
        (dict(eps=0.0), "eps"),
        (dict(lr=float("nan")), "lr"),
        (dict(step=0), "step"),
    ],
)
def test_adam_refuses_hyper_parameters_that_give_nan(kw, match):
    p = np.ones(4)
    args = dict(lr=0.1) | kw
    with pytest.raises(ValueError, match=match):
        K.adam_update(p, np.ones(4), np.zeros(4), np.zeros(4), **args)
    assert np.array_equal(p, np.ones(4))  # nothing was touched


def _rewrite(src, dst, change_arrays=None, change_meta=None, extra=None):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(bytes(z["meta"]).decode())
    if change_arrays:
        change_arrays(arrays)
    if change_meta:
        change_meta(meta)
    payload = dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    payload.update(extra or {})
    np.savez(dst, **payload)
    return dst


def _retype(dtype):
    def f(arrays):
        arrays["a/p.0.w"] = arrays["a/p.0.w"].astype(dtype)

    return f


@pytest.mark.parametrize(
    "how, match",
    [
        (dict(change_arrays=_retype(np.int8)), "int8"),
        (dict(change_arrays=_retype("U3")), "<U3"),
        (dict(change_arrays=lambda a: a["a/p.0.b"].fill(np.nan)), "NaN"),
        (dict(change_meta=lambda m: m["config"].update(hidden=400_000)), "GiB"),
        (dict(change_meta=lambda m: m.pop("steps")), "steps"),
        (dict(change_meta=lambda m: m.update(epoch="1")), "epoch"),
        (dict(change_meta=lambda m: m.update(partial=None)), "partial"),
        (dict(change_meta=lambda m: m.update(config=[])), "config"),
        (dict(extra={"a/p.9.w": np.zeros(10**6, np.float32)}), "unexpected member"),
    ],
)
def test_tampered_checkpoints_are_refused(tmp_path, trained, how, match):
    bad = _rewrite(trained, tmp_path / "bad.npz", **how)
    with pytest.raises(CheckpointError, match=match):
        T.predict(bad, np.zeros((1, 28, 28), np.uint8))


def test_a_member_claiming_more_than_it_can_need_is_not_read(tmp_path, trained, monkeypatch):
    bad = _rewrite(trained, tmp_path / "bad.npz", change_arrays=lambda a: a.update(
        {"a/p.0.b": np.zeros(10**6, np.float32)}))  # fmt: skip
    real, sizes = np.lib.format.read_array, []

    def read_array(*a, **k):
        out = real(*a, **k)
        sizes.append(out.size)
        return out

    monkeypatch.setattr(np.lib.format, "read_array", read_array)
    with pytest.raises(CheckpointError, match="claims 4,000,128 bytes"):
        T.predict(bad, np.zeros((1, 28, 28), np.uint8))
    assert sizes and 10**6 not in sizes  # refused from the zip directory, never read


def _pickle(tmp_path, x, y):
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(((x, y), (x[:0], y[:0]), (x, y)), f)
    return path


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.full((3, 784), 200.0, np.float32), np.array([1, 2, 3]), r"\[0, 1\]"),
        (np.zeros((3, 784), np.float32), np.array([1.5, 2.0, 3.0]), "integers"),
        (np.zeros((3, 784), np.uint8), np.array([1, 2, 3]), "float"),
        (np.zeros((3, 700), np.float32), np.array([1, 2, 3]), "784"),
    ],
)
def test_pickles_with_wrong_pixels_or_labels_are_refused(tmp_path, x, y, match):
    with pytest.raises(DataError, match=match):
        D.load(_pickle(tmp_path, x, y))


# 11. sizes are checked before reading ------------------------------------------------------


def test_a_gzip_that_inflates_past_its_header_is_read_only_as_far_as_the_header_says(tmp_path):
    from test_data import idx_bytes

    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    # a header for 2 images, then 40 MB of zeros that compress to ~40 kB
    bomb.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 28, 28))) + bytes(40 * 10**6)))
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(DataError, match="padded"):
        D.read_idx(bomb, 3)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * 10**6  # far below the 40 MB the stream inflates to


def test_a_header_claiming_too_much_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "MAX_BYTES", 10**6)
    f = tmp_path / "t10k-images-idx3-ubyte"
    f.write_bytes(bytes([0, 0, 8, 3]) + (10**9).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    with pytest.raises(DataError, match="over the 1,000,000-byte limit"):
        D.read_idx(f, 3)


def test_a_gzip_that_inflates_past_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "MAX_BYTES", 10**6)
    bomb = tmp_path / "mnist.pkl.gz"
    bomb.write_bytes(gzip.compress(bytes(4 * 10**6)))  # 4 kB that inflate to 4 MB
    with pytest.raises(DataError, match="inflates past"):
        D.load(bomb)


# 12. nothing hangs -------------------------------------------------------------------------


def test_a_fifo_or_a_device_as_a_data_file_is_refused(tmp_path):
    fifo = tmp_path / "mnist.pkl.gz"
    os.mkfifo(fifo)
    t = time.monotonic()
    with pytest.raises(DataError, match="not a regular file"):
        D.load(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        D.load("/dev/zero")
    with pytest.raises(CheckpointError, match="not a regular file"):
        T.predict(fifo, np.zeros((1, 28, 28), np.uint8))
    assert time.monotonic() - t < 10  # a blocked open would hang forever, not be slow


class _Trickle(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.05)

    def log_message(self, *a):
        pass


def test_a_trickling_download_stops_at_its_deadline(tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    logged = []
    try:
        t = time.monotonic()
        with pytest.raises(OSError, match="deadline"):
            D._fetch(f"http://127.0.0.1:{srv.server_port}/f.gz", tmp_path / "f.part", 5, 1,
                     logged.append)  # fmt: skip
        assert time.monotonic() - t < 5
    finally:
        srv.shutdown()
        srv.server_close()
    assert (tmp_path / "f.part").stat().st_size > 0  # kept for the next attempt


# 13. one line, never a traceback -----------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", b"\x00" * 100])
def test_truncated_or_empty_checkpoints_are_one_line_errors(tmp_path, capsys, content):
    bad = tmp_path / "c.npz"
    bad.write_bytes(content)
    png = tmp_path / "x.npy"
    np.save(png, np.zeros((28, 28), np.uint8))
    rc, _, err = run_cli(capsys, "predict", str(bad), str(png))
    assert rc == 2 and "c.npz" in err and len(err.strip().splitlines()) == 1


def test_a_truncated_real_checkpoint_is_refused(tmp_path, trained):
    bad = tmp_path / "c.npz"
    bad.write_bytes(trained.read_bytes()[: trained.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        T.predict(bad, np.zeros((1, 28, 28), np.uint8))


def test_an_empty_test_set_is_refused_before_training(tmp_path):
    from test_data import write_set

    write_set(tmp_path, n_train=40, n_test=0)
    with pytest.raises(DataError, match="no images"):
        T.train(T.config(data=str(tmp_path), batch_size=8, hidden=16), **quiet)


def test_timeouts_memory_and_bugs_are_one_line(capsys, monkeypatch):
    import derivgrad.commands.bench as B

    for exc, code, word in [
        (subprocess.TimeoutExpired(["/usr/bin/pdflatex", "x"], 120), 2, "pdflatex timed out"),
        (MemoryError(), 2, "out of memory"),
        (KeyError("bug"), 1, "internal error"),
    ]:
        monkeypatch.setattr(B, "_cmd_bench", lambda a, e=exc: (_ for _ in ()).throw(e))
        monkeypatch.setattr(cli, "build_parser", _parser_with(B))
        rc, _, err = run_cli(capsys, "bench")
        assert rc == code and word in err and len(err.strip().splitlines()) == 1


def _parser_with(B):
    import argparse

    def build(argv=None):
        ap = argparse.ArgumentParser(prog="derivgrad")
        sub = ap.add_subparsers(dest="command", required=True)
        p = sub.add_parser("bench")
        p.set_defaults(func=B._cmd_bench)
        return ap

    return build


@pytest.mark.parametrize("value", ["0", "-2", "abc", ""])
def test_a_bad_numba_num_threads_is_named(capsys, monkeypatch, value):
    monkeypatch.setenv("NUMBA_NUM_THREADS", value)
    rc, _, err = run_cli(capsys, "train", "--epochs", "0")
    assert rc == 2 and "NUMBA_NUM_THREADS" in err


def test_a_bad_numba_num_threads_is_named_before_numba_is_imported():
    # in a fresh process Numba reads the variable on import and raises on "0" itself
    env = {**os.environ, "NUMBA_NUM_THREADS": "0"}
    r = subprocess.run([sys.executable, "-m", "derivgrad", "bench", "--no-epoch"],
                       capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.strip() == (
        "derivgrad bench: error: environment variable NUMBA_NUM_THREADS='0' must be an integer >= 1"
    )


def _derivgrad(*argv, **kw):
    return subprocess.Popen([sys.executable, "-m", "derivgrad", *argv], text=True,
                            stderr=subprocess.PIPE, **kw)  # fmt: skip


def test_closed_stdout_and_early_ctrl_c_give_no_traceback(tmp_path):
    cmd = [sys.executable, "-m", "derivgrad", "shapes", "lenet"]
    closed = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=lambda: os.close(1))
    assert "Traceback" not in closed.stderr and closed.returncode == 0, closed.stderr
    # a reader that goes away (``| head -c0``): quiet, status 141 as SIGPIPE would give
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) in (0, 141) and "Traceback" not in err, err
    # Ctrl-C while the command imports its libraries (numba's extensions are being loaded)
    p = _derivgrad("train", "--limit", "64", "--batch-size", "32", "--quiet",
                   stdout=subprocess.DEVNULL)  # fmt: skip
    t = time.monotonic()
    while time.monotonic() - t < 60 and p.poll() is None:
        with open(f"/proc/{p.pid}/maps") as f:
            if "numba" in f.read():
                break
        time.sleep(0.005)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert "Traceback" not in err and p.returncode == 130, err
    # and while it prepares its kernels, before the training loop
    p = _derivgrad("train", "--limit", "64", "--batch-size", "32", "--quiet",
                   stdout=subprocess.DEVNULL)  # fmt: skip
    for line in p.stderr:
        if "preparing kernels" in line:
            p.send_signal(signal.SIGINT)
            break
    _, err = p.communicate(timeout=60)
    assert "Traceback" not in err and p.returncode == 130, err


# 14. messages name the argument ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, word",
    [
        (["bench", "--repeats", "0"], "--repeats"),
        (["check", "--examples", "0"], "--examples"),
        (["train", "--seed", "-1"], "--seed"),
        (["train", "--momentum", "nan"], "--momentum"),
        (["train", "--plot", "p_noext"], "--plot"),
        (["train", "--threads", "0"], "--threads"),
        (["train", "--limit", "0"], "--limit"),
        (["train", "--resume"], "--checkpoint"),
    ],
)
def test_command_line_messages_name_the_option(capsys, argv, word):
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and word in err and len(err.strip().splitlines()) == 1, err


def test_library_messages_name_the_argument():
    with pytest.raises(ValueError, match="stride"):
        K.output_size(10, 3, 0)
    with pytest.raises(ValueError, match="padding"):
        K.output_size(10, 3, 1, -1)
    with pytest.raises(TypeError, match="dtype float16"):
        K.sgd_update(*_sgd_args(np.ones(3, np.float16)))
    with pytest.raises(ValueError, match="weight_decay"):
        K.sgd_update(*_sgd_args(np.ones(3)), weight_decay=float("inf"))


# found by attacking the project after the audit ---------------------------------------------


def test_unknown_training_settings_are_named():
    with pytest.raises(ParamError, match="bogus"):
        T.train({"epochs": 1, "bogus": 2}, **quiet)


def test_an_output_that_would_overwrite_the_data_is_refused(tmp_path):
    data = tmp_path / "mnist.pkl.gz"
    data.write_bytes(b"data")
    with pytest.raises(UsageError, match="overwrite the --data"):
        T.config(data=str(data), checkpoint=str(data), overwrite=True)


def test_check_op_and_gradcheck_refuse_meaningless_arguments():
    from derivgrad import gradcheck
    from derivgrad.checks.properties import check_op

    with pytest.raises(ValueError, match="examples"):
        check_op("relu", examples=0)
    with pytest.raises(TypeError, match="inputs"):
        gradcheck(lambda x: x, None, {})
    with pytest.raises(ValueError, match="projections"):
        gradcheck(np.sin, {"x": np.ones(2)}, {"x": np.cos(np.ones(2))}, upstream=np.ones(2),
                  mode="fast", projections=0)  # fmt: skip


def test_an_infinite_test_loss_is_a_divergence_and_writes_nothing(tmp_path, monkeypatch):
    from derivgrad.errors import DivergedError

    monkeypatch.setattr(T, "evaluate", lambda *a, **k: (float("inf"), 0.1))
    with pytest.raises(DivergedError, match="test loss is inf"):
        T.train(tiny(tmp_path / "c.npz"), **quiet)
    assert not (tmp_path / "c.npz").exists()
