"""Retry policy: exponential backoff with full jitter and a cap."""

from __future__ import annotations

import random

from darkroom.settings import Settings


def backoff_s(settings: Settings, retries_done: int, rng: random.Random | None = None) -> float:
    """Delay before retry number ``retries_done + 1``: uniform in [0.5, 1] x min(cap, base * 2^n)."""
    ceiling = min(settings.retry_backoff_max_s, settings.retry_backoff_base_s * (2**retries_done))
    return ceiling * (0.5 + 0.5 * (rng or random).random())
