"""A model file: ``net.py`` defines ``model()`` (``net.py:other`` names another function)
returning a module of :mod:`derivgrad.nn`.  The file is the user's own program, run as
Python; everything it fails with becomes one line naming the file."""

from __future__ import annotations

import os
import runpy
from collections.abc import Callable

from ..errors import DerivgradError, ParamError
from .layers import Module


def split(spec: str) -> tuple[str, str]:
    """``"net.py:other"`` -> ``("net.py", "other")``; the function defaults to ``model``."""
    path, sep, func = spec.rpartition(":")
    if not sep or not path or os.sep in func or func.endswith(".py"):
        path, func = spec, "model"
    if not func.isidentifier():
        raise ParamError(f"--model {spec}: {func!r} is not a function name")
    return path, func


def load(spec: str) -> Callable[[], Module]:
    """The function ``spec`` names, checked to return a module (called once here)."""
    path, func = split(spec)
    if not os.path.isfile(path):
        raise ParamError(f"--model {spec}: no file {path}")
    try:
        space = runpy.run_path(path, run_name="derivgrad_model")
    except DerivgradError as e:
        raise ParamError(f"--model {spec}: {e}") from None
    except SyntaxError as e:
        raise ParamError(f"--model {spec}: line {e.lineno}: {e.msg}") from None
    except Exception as e:  # the user's program: any failure is theirs, reported in one line
        raise ParamError(
            f"--model {spec}: running {path} failed: {type(e).__name__}: {e}"
        ) from None
    f = space.get(func)
    if not callable(f):
        raise ParamError(f"--model {spec}: {path} defines no function {func}()")

    def make() -> Module:
        try:
            m = f()
        except DerivgradError as e:
            raise ParamError(f"--model {spec}: {func}(): {e}") from None
        except Exception as e:
            raise ParamError(f"--model {spec}: {func}() failed: {type(e).__name__}: {e}") from None
        if not isinstance(m, Module):
            raise ParamError(
                f"--model {spec}: {func}() returned {type(m).__name__}, not a layer of derivgrad.nn"
            )
        return m

    make()
    return make
