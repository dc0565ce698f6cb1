"""One training run cut by an interrupt and resumed from its checkpoint, for the tests that
hold a resumed run to an uninterrupted one (the LeNet's and a network of one's own)."""

from __future__ import annotations

from typing import Any

import pytest

import derivgrad.training.train as T


def interrupted_and_resumed(cfg: dict[str, Any], at_call: int, path: str, monkeypatch) -> tuple:
    """``(metrics, net)`` of ``cfg`` trained with a ``KeyboardInterrupt`` at the
    ``at_call``-th learning-rate lookup (one a step), then resumed from ``path``."""
    calls = {"n": 0}
    real = T.lr_at

    def interrupting(*a):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(T, "lr_at", interrupting)
    with pytest.raises(KeyboardInterrupt):
        T.train(T.config(checkpoint=path, **cfg), log=lambda s: None, progress=False)
    monkeypatch.setattr(T, "lr_at", real)
    return T.train(
        T.config(checkpoint=path, resume=True, **cfg), log=lambda s: None, progress=False
    )
