"""MNIST loading: the four IDX files (gzip or not), the classic ``mnist.pkl.gz`` (through a
restricted unpickler that admits NumPy arrays only), the small subset embedded in the
package, and a verified download into a user cache.

Every problem with a data file raises :class:`DataError` naming the file and what is
wrong; nothing half-read is returned.
"""

import gzip
import hashlib
import http.client
import io
import os
import pickle
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .errors import DataError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the *decompressed* official files: independent of the gzip wrapper, so one
# checksum serves every mirror.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
EMBEDDED = Path(__file__).with_name("data") / "mnist_subset.npz"


def _read_bytes(path):
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path, expect_ndim):
    """Read an IDX file (``0x00 0x00 type ndim`` magic, big-endian dims, uint8 data)."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic {raw[:4].hex() or 'empty'})")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    if ndim != expect_ndim:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expect_ndim}")
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    need = 4 + 4 * ndim + int(np.prod(dims))
    if len(raw) != need:
        raise DataError(
            f"{path}: truncated or padded: header says {dims} ({need} bytes) but the file "
            f"has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _check_pair(images, labels, where):
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{where}: images must be N x 28 x 28, got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{where}: label {int(labels.max())} is not a digit 0-9 (mislabeled file?)")


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        p = Path(directory) / name
        if p.exists():
            return p
    raise DataError(
        f"{directory}: neither {stem} nor {stem}.gz found; expected the four MNIST IDX files"
    )


def load_idx_dir(directory):
    """The four standard files from ``directory`` → dict of uint8 images (N, 28, 28) and labels."""
    out = {}
    for key, stem in FILES.items():
        out[key] = read_idx(_find(directory, stem), 3 if key.endswith("images") else 1)
    _check_pair(out["train_images"], out["train_labels"], f"{directory} (training files)")
    _check_pair(out["test_images"], out["test_labels"], f"{directory} (test files)")
    return out


class _ArraysOnly(pickle.Unpickler):
    """Admits NumPy arrays and dtypes and nothing else: a data file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only NumPy arrays are allowed"
        )


def load_pickle(path):
    """The classic ``mnist.pkl.gz``: ((train x, y), (valid x, y), (test x, y)) with float
    pixels in [0, 1).  Training and validation are joined into 60,000 training images."""
    raw = _read_bytes(path)
    try:
        data = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a loadable MNIST pickle ({e})") from None
    try:
        (tx, ty), (vx, vy), (sx, sy) = data
    except (TypeError, ValueError):
        raise DataError(f"{path}: expected three (images, labels) pairs") from None
    to_u8 = lambda a: (
        np.clip(np.round(np.asarray(a, np.float64) * 256), 0, 255)
        .astype(np.uint8)
        .reshape(-1, 28, 28)
    )
    out = dict(
        train_images=to_u8(np.concatenate([tx, vx])),
        train_labels=np.concatenate([ty, vy]).astype(np.uint8),
        test_images=to_u8(sx),
        test_labels=np.asarray(sy).astype(np.uint8),
    )
    _check_pair(out["train_images"], out["train_labels"], f"{path} (training)")
    _check_pair(out["test_images"], out["test_labels"], f"{path} (test)")
    return out


def load_embedded():
    """The subset shipped in the package (see README for its selection and licence)."""
    try:
        with np.load(EMBEDDED) as z:
            out = {k: z[k] for k in FILES}
    except (OSError, KeyError, ValueError) as e:
        raise DataError(
            f"{EMBEDDED}: embedded MNIST subset unreadable ({e}); reinstall derivgrad"
        ) from None
    _check_pair(out["train_images"], out["train_labels"], str(EMBEDDED))
    _check_pair(out["test_images"], out["test_labels"], str(EMBEDDED))
    return out


def load(path=None):
    """``None`` → the embedded subset; a directory → IDX files; a file → ``mnist.pkl.gz``."""
    if path is None:
        return load_embedded()
    p = Path(path)
    if p.is_dir():
        return load_idx_dir(p)
    if p.exists():
        return load_pickle(p)
    raise DataError(f"{path}: no such file or directory")


def make_subset(directory, out_path, n_train=10000, n_test=2000, seed=0):
    """Write the embedded subset: ``n_train`` / ``n_test`` images drawn without replacement
    by ``numpy.random.default_rng(seed)`` from the full files in ``directory``."""
    full = load_idx_dir(directory)
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.choice(len(full["train_labels"]), n_train, replace=False))
    te = np.sort(rng.choice(len(full["test_labels"]), n_test, replace=False))
    np.savez_compressed(
        out_path,
        train_images=full["train_images"][tr],
        train_labels=full["train_labels"][tr],
        test_images=full["test_images"][te],
        test_labels=full["test_labels"][te],
        train_index=tr.astype(np.uint16),
        test_index=te.astype(np.uint16),
        seed=np.array(seed),
    )


def cache_dir():
    base = os.environ.get("DERIVGRAD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "derivgrad"
    )
    return Path(base) / "mnist"


def _sha256_decompressed(path):
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def download(directory=None, mirrors=MIRRORS, timeout=30, log=print):
    """Fetch the four files into ``directory`` (default: the user cache) and return it.

    Each file is written to ``NAME.gz.part`` and resumed from there after a failed attempt
    (HTTP Range), verified against the SHA-256 of its decompressed content, and only then
    renamed into place (atomic).  A file that fails verification is deleted and the next
    mirror tried; if every mirror fails, :class:`DataError` names the file and the reasons.
    """
    directory = Path(directory or cache_dir())
    directory.mkdir(parents=True, exist_ok=True)
    for stem, digest in SHA256.items():
        final = directory / (stem + ".gz")
        if final.exists() and _sha256_decompressed(final) == digest:
            continue
        errors = []
        for mirror in mirrors:
            part = directory / (stem + ".gz.part")
            try:
                _fetch(mirror + stem + ".gz", part, timeout)
                try:
                    got = _sha256_decompressed(part)
                except DataError as e:
                    got = f"unreadable ({e})"
                if got != digest:
                    part.unlink(missing_ok=True)
                    errors.append(
                        f"{mirror}: checksum mismatch ({got[:16]}... != {digest[:16]}...)"
                    )
                    continue
                os.replace(part, final)
                log(f"downloaded {final}")
                break
            except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as e:
                errors.append(f"{mirror}: {e}")
        else:
            raise DataError(f"{stem}.gz: download failed from every mirror: " + "; ".join(errors))
    return directory


def _fetch(url, part, timeout):
    """Append the rest of ``url`` to ``part`` (HTTP Range from its current size).  A transfer
    that ends early raises ``OSError`` and leaves ``part`` in place for the next attempt."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        resumed = bool(have) and r.status == 206
        length = r.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        got = 0
        with open(part, "ab" if resumed else "wb") as f:
            try:
                while True:
                    chunk = r.read(1 << 16)
                    if not chunk:
                        break
                    f.write(chunk)
                    got += len(chunk)
            except http.client.IncompleteRead as e:
                f.write(e.partial)
                got += len(e.partial)
            finally:
                f.flush()
                os.fsync(f.fileno())
        if expected is not None and got < expected:
            raise OSError(
                f"incomplete transfer of {url}: {got} of {expected} bytes; "
                f"{part} kept, the next attempt resumes from it"
            )
