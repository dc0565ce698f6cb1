"""The compiled-kernel cache goes stale with any kernel source, not only the kernel's own file."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from numba.core.registry import CPUDispatcher

import derivgrad.kernels as kernels_pkg
from derivgrad.kernels import _cache


def _dispatchers():
    for info in pkgutil.iter_modules(kernels_pkg.__path__):
        module = importlib.import_module(f"derivgrad.kernels.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.__module__ == module.__name__:
                yield f"{info.name}.{name}", value


def test_every_cached_kernel_is_stamped_with_all_kernel_sources():
    assert _cache.INSTALLED
    seen = set()
    for name, dispatcher in _dispatchers():
        locator = dispatcher._cache._impl._locator
        assert locator.get_source_stamp()[1] == _cache.DIGEST, name
        seen.add(name)
    # the kernel whose stale cache once hid a bug in a helper from another file
    assert "_conv_kernels.conv_forward" in seen


def test_digest_changes_with_any_file_and_only_with_py_files(tmp_path: Path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    before = _cache.digest(tmp_path)
    (tmp_path / "notes.txt").write_text("not source")
    assert _cache.digest(tmp_path) == before
    (tmp_path / "b.py").write_text("y = 3\n")
    assert _cache.digest(tmp_path) != before
    (tmp_path / "b.py").write_text("y = 2\n")
    assert _cache.digest(tmp_path) == before
    (tmp_path / "b.py").rename(tmp_path / "c.py")
    assert _cache.digest(tmp_path) != before


def test_files_outside_the_package_keep_numbas_own_stamp(tmp_path: Path):
    outside = tmp_path / "user_kernel.py"
    outside.write_text("def f():\n    return 1\n")
    impl = getattr(_cache.caching, "CacheImpl", None) or _cache.caching._CacheImpl
    stamped = [c for c in impl._locator_classes if c.__name__.startswith("PackageStamped")]
    assert stamped
    for cls in stamped:
        assert cls.from_function(lambda: 1, str(outside)) is None
