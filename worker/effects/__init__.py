"""The effects: one module per family, each registering pure batched torch functions."""

from __future__ import annotations

import importlib
import pkgutil

_SKIP = {"registry", "common", "chain"}  # helpers and the chain runner register nothing


def load_all() -> None:
    """Import every effect module so each registers itself (idempotent)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _SKIP:
            importlib.import_module(f"{__name__}.{info.name}")
