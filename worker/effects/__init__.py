"""The effects: one module per family, each registering pure batched torch functions."""

from __future__ import annotations

import functools
import importlib
import pkgutil

_SKIP = {"registry", "common", "chain", "fused", "warmup"}  # helpers and runners register nothing


@functools.cache
def load_all() -> None:
    """Import every effect module so each registers itself (once: the hot path calls this per lookup,
    and listing the package's files costs more than a whole small job's effects)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _SKIP:
            importlib.import_module(f"{__name__}.{info.name}")
