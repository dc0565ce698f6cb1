"""MNIST files: good, corrupt, truncated, mislabeled; the restricted unpickler; the
verified, resumable download against a local HTTP server on 127.0.0.1."""

import gzip
import hashlib
import http.server
import pickle
import threading

import numpy as np
import pytest

from derivgrad.training import data as D


def idx_bytes(arr):
    arr = np.asarray(arr, np.uint8)
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    return head + arr.tobytes()


def write_set(d, n_train=12, n_test=5, gz=True, labels_max=9):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, labels_max + 1, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    for key, stem in D.FILES.items():
        raw = idx_bytes(arrays[key])
        (d / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    arrays = write_set(tmp_path, gz=gz)
    got = D.load(tmp_path)
    for k, v in arrays.items():
        assert np.array_equal(got[k], v)


def test_embedded_subset_is_real_mnist():
    e = D.load()
    assert e["train_images"].shape == (10000, 28, 28) and e["test_images"].shape == (2000, 28, 28)
    assert set(np.unique(e["train_labels"])) == set(range(10))
    assert 20 < e["train_images"].mean() < 50  # MNIST's mean pixel is about 33


@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-10]), ["truncated"]),  # truncated gzip stream
        (
            lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-7])),
            ["truncated"],
        ),
        (
            lambda p: p.write_bytes(
                gzip.compress(b"\x01\x02" + gzip.decompress(p.read_bytes())[2:])
            ),
            ["magic"],
        ),
        (lambda p: p.write_bytes(b"\x1f\x8bnot really gzip"), ["gzip"]),
        (lambda p: p.unlink(), ["neither"]),
    ],
)
def test_damaged_files_name_the_file_and_the_problem(tmp_path, damage, words):
    write_set(tmp_path)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    damage(target)
    with pytest.raises(D.DataError) as e:
        D.load(tmp_path)
    assert "train-images" in str(e.value) or str(tmp_path) in str(e.value)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_mislabeled_and_mismatched_files(tmp_path):
    write_set(tmp_path, labels_max=12)
    with pytest.raises(D.DataError, match="not a digit"):
        D.load(tmp_path)
    write_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4))))
    with pytest.raises(D.DataError, match="5 images but 4 labels"):
        D.load(tmp_path)


def test_pickle_loader_and_its_refusal_of_code(tmp_path):
    rng = np.random.default_rng(1)
    part = lambda n: (rng.integers(0, 256, (n, 784)) / 256.0, rng.integers(0, 10, n))
    p = tmp_path / "mnist.pkl.gz"
    p.write_bytes(gzip.compress(pickle.dumps((part(6), part(2), part(3)))))
    got = D.load(p)
    assert got["train_images"].shape == (8, 28, 28) and got["test_labels"].shape == (3,)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    bad = tmp_path / "evil.pkl.gz"
    bad.write_bytes(gzip.compress(pickle.dumps(Evil())))
    with pytest.raises(D.DataError, match="only NumPy arrays"):
        D.load(bad)


class _Handler(http.server.BaseHTTPRequestHandler):
    files = {}
    fail_once = set()
    ranges = []

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        if self.headers.get("Range"):
            _Handler.ranges.append((name, self.headers["Range"]))
        if name in self.fail_once:  # a connection that dies half-way
            self.fail_once.discard(name)
            body = self.files[name][: len(self.files[name]) // 2]
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.files[name])))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.connection.close()
            return
        if name not in self.files:
            self.send_error(404)
            return
        body = self.files[name]
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].rstrip("-"))
            self.send_response(206)
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    arrays = write_set(tmp_path)
    good = {s + ".gz": (tmp_path / (s + ".gz")).read_bytes() for s in D.FILES.values()}
    monkeypatch.setattr(
        D,
        "SHA256",
        {s: hashlib.sha256(gzip.decompress(good[s + ".gz"])).hexdigest() for s in D.FILES.values()},
    )
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, good, arrays
    srv.shutdown()


def test_download_good_files(server, tmp_path):
    srv, good, arrays = server
    _Handler.files = dict(good)
    out = D.download(
        tmp_path / "cache", mirrors=(f"http://127.0.0.1:{srv.server_port}/",), log=lambda s: None
    )
    got = D.load(out)
    assert np.array_equal(got["test_images"], arrays["test_images"])


def test_download_rejects_corrupt_and_falls_back_to_the_next_mirror(server, tmp_path):
    srv, good, arrays = server
    corrupt = {k: gzip.compress(gzip.decompress(v)[:-1] + b"\x07") for k, v in good.items()}
    _Handler.files = corrupt
    url = f"http://127.0.0.1:{srv.server_port}/"
    with pytest.raises(D.DataError, match="checksum mismatch"):
        D.download(tmp_path / "c1", mirrors=(url,), log=lambda s: None)
    assert not list((tmp_path / "c1").glob("*.gz"))  # nothing unverified left in place
    with pytest.raises(D.DataError, match="train-images"):
        D.download(tmp_path / "c2", mirrors=(url + "missing/",), log=lambda s: None)


def test_download_resumes_after_a_truncated_transfer(server, tmp_path):
    srv, good, arrays = server
    _Handler.files = dict(good)
    name = "train-images-idx3-ubyte.gz"
    _Handler.fail_once = {name}
    url = f"http://127.0.0.1:{srv.server_port}/"
    cache = tmp_path / "c3"
    _Handler.ranges = []
    with pytest.raises(D.DataError, match="incomplete transfer"):
        D.download(cache, mirrors=(url,), log=lambda s: None)
    part = cache / (name + ".part")
    assert part.exists() and 0 < part.stat().st_size < len(good[name])
    assert not (cache / name).exists()  # nothing unverified in place
    out = D.download(cache, mirrors=(url,), log=lambda s: None)
    assert (name, f"bytes={len(good[name]) // 2}-") in _Handler.ranges  # resumed, not restarted
    assert np.array_equal(D.load(out)["train_images"], arrays["train_images"])
    assert not part.exists()
