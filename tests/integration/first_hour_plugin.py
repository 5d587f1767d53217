"""A plugin app the client does not know, for tests/integration/test_cli_first_hour.py.

Loaded only by an API subprocess (``DARKROOM_PLUGINS=tests.integration.first_hour_plugin``), never in
the test process, so the client must learn its fields from the server's /openapi.json. No worker
runs it: the tests only check names and submit.
"""

from __future__ import annotations

from pydantic import Field

from darkroom.apps import APPS, AppSpec
from darkroom.apps.post_processing import ImageInputBase, ProcessedOutput

APP_ID = "first-hour/echo"


class EchoInput(ImageInputBase):
    echo_strength: float = Field(0.5, ge=0, le=1, description="How loud the echo is")

    def effect_chain(self):
        return []


APPS[APP_ID] = AppSpec(APP_ID, APP_ID, EchoInput, ProcessedOutput, "effects", "Echo (tests)")
