"""``derivgrad predict`` on several files (issue 31, item 7): float images in [0, 1] and
integer images in 0..255 are the same pictures to it, and every line names its file and the
image's index within that file."""

from __future__ import annotations

import json

import numpy as np
import pytest

import derivgrad.training.train as T
from derivgrad.cli import main
from derivgrad.training.predict import predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "c.npz"
    T.train(
        T.config(epochs=1, limit=64, batch_size=32, hidden=16, filters=4, checkpoint=str(path)),
        log=lambda s: None,
        progress=False,
    )
    return path


def test_float_and_integer_files_are_the_same_images_and_each_line_names_its_file(
    tmp_path, trained, capsys
):
    rng = np.random.default_rng(3)
    u8 = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    as_float = u8.astype(np.float64) / 255  # [0, 1], refused before the fix
    as_int = u8.astype(np.int32)
    files = {"u8.npy": u8, "float.npy": as_float, "int.npy": as_int, "one.npy": u8[1]}
    for name, a in files.items():
        np.save(tmp_path / name, a)
    paths = [str(tmp_path / n) for n in files]
    rc = main(["predict", str(trained), *paths])
    out, err = capsys.readouterr()
    assert rc in (0, None), err
    recs = [json.loads(line) for line in out.splitlines()]
    assert [(r["file"], r["index"]) for r in recs] == [
        (p, i) for p, a in zip(paths, files.values()) for i in range(len(a) if a.ndim == 3 else 1)
    ]
    # the same pictures get the same answers, whichever scale they came in on, and the
    # command line agrees with the library on each file alone
    for p, a in zip(paths, files.values()):
        mine = [r for r in recs if r["file"] == p]
        probs = predict(trained, a)
        assert [r["label"] for r in mine] == [int(q.argmax()) for q in probs]
        np.testing.assert_allclose([r["probability"] for r in mine], probs.max(1), atol=6e-5)
    by_file = {p: [r["label"] for r in recs if r["file"] == p] for p in paths}
    assert by_file[paths[0]] == by_file[paths[1]] == by_file[paths[2]]
    assert by_file[paths[3]] == [by_file[paths[0]][1]]


def test_out_of_range_pixels_are_still_refused_naming_the_file(tmp_path, trained, capsys):
    np.save(tmp_path / "bad.npy", np.full((2, 28, 28), 1.5))
    rc = main(["predict", str(trained), str(tmp_path / "bad.npy")])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and "bad.npy" in err and "[0, 1]" in err
