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
import math
import os
import pickle
import stat
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DataError

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
PathLike = str | os.PathLike
EMBEDDED = Path(__file__).resolve().parents[1] / "data" / "mnist_subset.npz"
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
# No MNIST file is larger than this once decompressed (the training images are 47 MB, the
# float pickle 220 MB); a file that claims or inflates to more is refused, not read.
MAX_BYTES = 512 * 2**20


def _regular_file(path):
    """``path``'s size, refusing what is not a regular file (a FIFO or ``/dev/zero`` would
    hang or be read without end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file")
    return st.st_size


def _read_bytes(path, limit=None):
    """The file's bytes, gunzipped if it is gzip; at most ``limit`` bytes are ever held,
    whatever a gzip stream inflates to (default :data:`MAX_BYTES`)."""
    limit = MAX_BYTES if limit is None else limit
    path = Path(path)
    size = _regular_file(path)
    with open(path, "rb") as f:
        magic = f.read(2)
        f.seek(0)
        if magic != b"\x1f\x8b":
            if size > limit:
                raise DataError(f"{path}: {size:,d} bytes, over the {limit:,d}-byte limit")
            return f.read()
        try:
            with gzip.GzipFile(fileobj=f) as z:
                raw = z.read(limit + 1)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    if len(raw) > limit:
        raise DataError(f"{path}: inflates past the {limit:,d}-byte limit (not an MNIST file)")
    return raw


def _stream(path):
    """An open binary stream of the file's content, gunzipped on the fly if it is gzip."""
    _regular_file(path)
    f = open(path, "rb")
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb"), f
    f.seek(0)
    return f, f


def _read_exactly(stream, n, path):
    try:
        return stream.read(n)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None


def read_idx(path: PathLike, expect_ndim: int) -> np.ndarray:
    """Read an IDX file (``0x00 0x00 type ndim`` magic, big-endian dims, uint8 data).

    The header is read first; the data it announces is checked against :data:`MAX_BYTES`
    and then exactly that much (plus one byte, to detect padding) is read, so memory is
    bounded by the header's claim however far a gzip stream would inflate."""
    stream, raw_file = _stream(path)
    with raw_file, stream:
        head = _read_exactly(stream, 4, path)
        if len(head) < 4 or head[0] != 0 or head[1] != 0:
            raise DataError(f"{path}: not an IDX file (bad magic {head.hex() or 'empty'})")
        if head[2] != 0x08:
            raise DataError(f"{path}: IDX element type 0x{head[2]:02x} is not unsigned byte (0x08)")
        ndim = head[3]
        if ndim != expect_ndim:
            raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expect_ndim}")
        dimbytes = _read_exactly(stream, 4 * ndim, path)
        if len(dimbytes) < 4 * ndim:
            raise DataError(f"{path}: truncated IDX header")
        dims = tuple(int.from_bytes(dimbytes[4 * i : 4 * i + 4], "big") for i in range(ndim))
        need = math.prod(dims)
        if need > MAX_BYTES:
            raise DataError(
                f"{path}: header claims {dims} ({need:,d} bytes), over the "
                f"{MAX_BYTES:,d}-byte limit"
            )
        data = _read_exactly(stream, need + 1, path)
    if len(data) != need:
        have = 4 + 4 * ndim + len(data)
        raise DataError(
            f"{path}: truncated or padded: header says {dims} ({4 + 4 * ndim + need} bytes) "
            f"but the file has {'more' if len(data) > need else have} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _check_pair(images, labels, where):
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{where}: images must be N x 28 x 28, got {images.shape}")
    if images.dtype != np.uint8 or labels.dtype.kind not in "iu":
        raise DataError(f"{where}: expected uint8 images and integer labels")
    if labels.shape != (images.shape[0],):
        n = labels.shape[0] if labels.ndim == 1 else labels.shape
        raise DataError(f"{where}: {images.shape[0]} images but {n} labels")
    if images.shape[0] == 0:
        raise DataError(f"{where}: no images")
    if labels.min() < 0 or labels.max() > 9:
        bad = int(labels.max()) if labels.max() > 9 else int(labels.min())
        raise DataError(f"{where}: label {bad} is not a digit 0-9 (mislabeled file?)")


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        p = Path(directory) / name
        if p.exists():
            return p
    raise DataError(
        f"{directory}: neither {stem} nor {stem}.gz found; expected the four MNIST IDX files"
    )


def load_idx_dir(directory: PathLike) -> dict[str, np.ndarray]:
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


PICKLE_PARTS = ("training", "validation", "test")


def _pickle_part(path, name, x, y):
    """One (images, labels) pair of ``mnist.pkl.gz``: float pixels in [0, 1] as rows of 784
    (or 28x28), integer labels; returned as uint8 images and labels."""
    x, y = np.asarray(x), np.asarray(y)
    where = f"{path} ({name})"
    if x.dtype.kind != "f" or not (x.ndim == 2 and x.shape[1] == 784 or x.shape[1:] == (28, 28)):
        raise DataError(
            f"{where}: images must be float rows of 784 pixels, got {x.dtype} {x.shape}"
        )
    if not np.isfinite(x).all() or x.min(initial=0) < 0 or x.max(initial=0) > 1:
        raise DataError(
            f"{where}: pixels must be finite floats in [0, 1] (0-255 data is not the classic "
            f"pickle's format)"
        )
    if y.dtype.kind not in "iu" or y.shape != (len(x),):
        raise DataError(f"{where}: labels must be {len(x)} integers, got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{where}: labels must be digits 0-9")
    # the classic file stores k/256; round back to the original byte
    u8 = np.clip(np.round(x.astype(np.float64) * 256), 0, 255).astype(np.uint8)
    return u8.reshape(-1, 28, 28), y.astype(np.uint8)


def load_pickle(path: PathLike) -> dict[str, np.ndarray]:
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
    parts = [_pickle_part(path, name, x, y) for name, (x, y) in zip(PICKLE_PARTS, data)]
    (tx, ty), (vx, vy), (sx, sy) = parts
    out = dict(
        train_images=np.concatenate([tx, vx]),
        train_labels=np.concatenate([ty, vy]),
        test_images=sx,
        test_labels=sy,
    )
    _check_pair(out["train_images"], out["train_labels"], f"{path} (training)")
    _check_pair(out["test_images"], out["test_labels"], f"{path} (test)")
    return out


def load_embedded() -> dict[str, np.ndarray]:
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


def load(path: PathLike | None = None) -> dict[str, np.ndarray]:
    """``None`` → the embedded subset; a directory → IDX files; a file → ``mnist.pkl.gz``."""
    if path is None:
        return load_embedded()
    p = Path(path)
    if p.is_dir():
        return load_idx_dir(p)
    if p.exists():
        return load_pickle(p)
    raise DataError(f"{path}: no such file or directory")


def make_subset(
    directory: PathLike, out_path: PathLike, n_train: int = 10000, n_test: int = 2000, seed: int = 0
) -> None:
    """Write the embedded subset: ``n_train`` / ``n_test`` images drawn without replacement
    by ``numpy.random.default_rng(seed)`` from the full files in ``directory``."""
    full = load_idx_dir(directory)
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.choice(len(full["train_labels"]), n_train, replace=False))
    te = np.sort(rng.choice(len(full["test_labels"]), n_test, replace=False))
    from ..atomic import write_atomic  # the one writer of output paths

    arrays = dict(
        train_images=full["train_images"][tr],
        train_labels=full["train_labels"][tr],
        test_images=full["test_images"][te],
        test_labels=full["test_labels"][te],
        train_index=tr.astype(np.uint16),
        test_index=te.astype(np.uint16),
        seed=np.array(seed),
    )
    write_atomic(out_path, lambda f: np.savez_compressed(f, **arrays))  # type: ignore[arg-type]


def cache_dir() -> Path:
    base = os.environ.get("DERIVGRAD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "derivgrad"
    )
    return Path(base) / "mnist"


def _sha256_decompressed(path):
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def download(
    directory: PathLike | None = None,
    mirrors: tuple[str, ...] = MIRRORS,
    timeout: float = 30,
    log: Callable[[str], object] = print,
    deadline: float = 600,
) -> Path:
    """Fetch the four files into ``directory`` (default: the user cache) and return it.

    Each file is written to ``NAME.gz.part`` and resumed from there after a failed attempt
    (HTTP Range), verified against the SHA-256 of its decompressed content, and only then
    renamed into place (atomic).  A file that fails verification is deleted and the next
    mirror tried; if every mirror fails, :class:`DataError` names the file and the reasons.
    ``timeout`` bounds each network wait and ``deadline`` each file's whole transfer (a
    server that trickles a byte at a time cannot hold the run forever); progress is logged
    every few seconds.
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
                _fetch(mirror + stem + ".gz", part, timeout, deadline, log)
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


def _fetch(url, part, timeout, deadline=600, log=print):
    """Append the rest of ``url`` to ``part`` (HTTP Range from its current size).  A transfer
    that ends early, or runs past ``deadline`` seconds, raises ``OSError`` and leaves
    ``part`` in place for the next attempt."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        resumed = bool(have) and r.status == 206
        length = r.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if expected is not None and expected > MAX_BYTES:
            raise OSError(f"{url}: {expected:,d} bytes announced, over the {MAX_BYTES:,d} limit")
        got, shown = 0, t0
        with open(part, "ab" if resumed else "wb") as f:
            try:
                while True:
                    # read1: whatever has arrived (one recv), so the deadline is looked at
                    # at least every `timeout` seconds however slowly bytes trickle in
                    chunk = r.read1(1 << 16)
                    if not chunk:
                        break
                    f.write(chunk)
                    got += len(chunk)
                    now = time.monotonic()
                    if now - t0 > deadline:
                        raise OSError(
                            f"{url}: {got:,d} bytes in {now - t0:.0f} s, past the {deadline} s "
                            f"deadline; {part} kept, the next attempt resumes from it"
                        )
                    if got > MAX_BYTES:
                        raise OSError(f"{url}: more than {MAX_BYTES:,d} bytes")
                    if now - shown >= 5:
                        of = f" of {expected:,d}" if expected else ""
                        log(f"  {part.name}: {got:,d}{of} bytes, {now - t0:.0f} s")
                        shown = now
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


def prepare(images: np.ndarray, normalize: bool) -> np.ndarray:
    """Pixels ``(N, 28, 28)`` on the 0..255 scale (uint8 or float) → float32
    ``(N, 1, 28, 28)`` in [0, 1], or standardised with MNIST's mean and std."""
    # One float32 array written in place: the former astype, divide and standardise made
    # three 188 MB temporaries for full MNIST's training set, whose first-touch page faults
    # took 0.6-1.2 s on the 2-core development machine, against 30-65 ms this way (the same
    # float32 operations, so the same bits).
    x = np.empty((len(images), 1, *images.shape[1:]), dtype=np.float32)
    np.divide(images[:, None], np.float32(255.0), out=x, dtype=np.float32)
    if normalize:
        x -= np.float32(MNIST_MEAN)
        x /= np.float32(MNIST_STD)
    return x
