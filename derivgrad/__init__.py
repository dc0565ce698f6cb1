"""derivgrad: derive, prove, print and run the gradients of convolutional networks.

    d = derivgrad.derive("conv2d", input=(3, 3), kernel=(2, 2))
    d.jacobian("x")    # shape input.shape + output.shape
    d.grad("x")        # the compact rule pad(δ, f-1) ⋆ rot180(W)
    d.verify()         # proved equal to the chain rule, symbolically
    d.latex()          # the worked solution

The package's names are loaded lazily (PEP 562): ``import derivgrad.kernels`` or training
never pulls in SymPy or the symbolic engine.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# Installed, the kernels live in derivgrad/kernels (pyproject maps the top-level folder
# kernels/ there).  Run from a source checkout (``python -m derivgrad`` in the repository
# root puts the checkout first on sys.path) that subfolder does not exist: let
# ``derivgrad.kernels`` resolve to the checkout's kernels/ instead of failing to import.
_here = __path__[0]
if not os.path.isdir(os.path.join(_here, "kernels")) and os.path.isfile(
    os.path.join(os.path.dirname(_here), "kernels", "__init__.py")
):
    __path__.append(os.path.dirname(_here))

# public name -> module that defines it (imported on first access)
_LAZY = {
    "derive": ".api",
    "define": ".notation",
    "OPS": ".registry",
    "gradcheck": ".checks.gradcheck",
    "GradcheckError": ".errors",
    "ParamError": ".errors",
    "DerivgradError": ".errors",
}

if TYPE_CHECKING:
    from .api import derive
    from .checks.gradcheck import gradcheck
    from .errors import DerivgradError, GradcheckError, ParamError
    from .notation import define
    from .registry import OPS


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'derivgrad' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "derive",
    "define",
    "gradcheck",
    "GradcheckError",
    "OPS",
    "ParamError",
    "DerivgradError",
    "__version__",
]
