"""Parameter parsing shared by the symbolic ops (the command line uses the same names)."""

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ParamError
from ..kernels import hyperparams as v


def pair(op: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        try:
            value = tuple(int(p) for p in parts) if len(parts) > 1 else int(parts[0])
        except ValueError:
            raise ParamError(f"{op}: {name} must be an int or AxB, got {value!r}") from None
    try:
        return v.pair(op, name, value, minimum)
    except (TypeError, ValueError) as e:
        raise ParamError(str(e)) from None


def count(op: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ParamError(f"{op}: {name} must be a whole number, got {value!r}") from None
    try:
        return v.int_param(op, name, value, minimum)
    except (TypeError, ValueError) as e:
        raise ParamError(str(e)) from None


def check_unknown(op: str, params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    extra = set(params) - set(allowed)
    if extra:
        raise ParamError(
            f"{op}: unknown parameter(s) {sorted(extra)}; {op} takes {sorted(allowed)}"
        )
