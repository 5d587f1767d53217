"""Plugins: modules named in ``settings.plugins`` are imported at start-up by the API and the workers,
so they can register extra apps and effects (the fault-injection apps of the test suite use this)."""

from __future__ import annotations

import importlib
import logging

from darkroom.settings import Settings

log = logging.getLogger(__name__)


def load_plugins(settings: Settings) -> None:
    for name in filter(None, (m.strip() for m in settings.plugins.split(","))):
        importlib.import_module(name)
        log.info("loaded plugin %s", name)
