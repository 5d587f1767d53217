"""Fault-injection app for the fault tests, loaded with DARKROOM_PLUGINS=tests.support.fault_plugin.

App ``darkroom-test/faults`` runs one effect, ``fault``, whose ``mode`` picks what happens in the
worker: ``ok`` (identity), ``slow`` (sleep, then identity), ``crash`` (SIGKILL the worker process),
``crash_once`` (crash unless ``marker`` exists, creating it first), ``fail`` (raise inside the batch),
``flaky`` (a transient storage error until ``marker`` exists, creating it).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from darkroom.apps import APPS, AppSpec
from darkroom.apps.params import EffectParams
from darkroom.apps.post_processing import ImageInputBase, ProcessedOutput
from darkroom.errors import StorageUnavailable

APP_ID = "darkroom-test/faults"
Mode = Literal["ok", "slow", "crash", "crash_once", "fail", "flaky"]


class FaultParams(EffectParams):
    mode: Mode = "ok"
    sleep_ms: int = Field(0, ge=0, le=10_000)
    marker: str = ""


class FaultInput(ImageInputBase):
    mode: Mode = "ok"
    sleep_ms: int = Field(0, ge=0, le=10_000)
    marker: str = ""

    def effect_chain(self):
        return [("fault", FaultParams(mode=self.mode, sleep_ms=self.sleep_ms, marker=self.marker))]


APPS[APP_ID] = AppSpec(APP_ID, APP_ID, FaultInput, ProcessedOutput, "effects", "Fault injection (tests)")


def _first_time(marker: str) -> bool:
    path = Path(marker)
    if path.exists():
        return False
    path.write_text("seen")
    return True


def fault(x, p):
    for item in p.items:
        if item.mode == "crash" or (item.mode == "crash_once" and _first_time(item.marker)):
            os.kill(os.getpid(), signal.SIGKILL)
        if item.mode == "flaky" and _first_time(item.marker):
            raise StorageUnavailable("injected transient storage failure")
        if item.mode == "fail":
            raise ValueError("injected failure inside the batch")
    time.sleep(max(item.sleep_ms for item in p.items) / 1000)
    return x


if "torch" in sys.modules:  # worker processes (the API only needs the app and its input model)
    from worker.effects.registry import EFFECTS, register

    if "fault" not in EFFECTS:
        register("fault", params=FaultParams)(fault)
