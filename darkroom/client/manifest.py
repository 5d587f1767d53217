"""What made each output of a bulk submit, in a JSON-lines file outside the output directory (which
holds the results and nothing else); `darkroom submit` keeps one per output directory in the user's
state directory (``darkroom.cli.state.submit_record``).

One line per finished output (its file name, the source, the app and a fingerprint of the
arguments), appended as outputs are written; the last line for a name wins. A later run with other
settings can then tell the outputs it would skip apart from the ones it would make again the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def fingerprint(app: str, arguments: dict[str, Any]) -> str:
    """The settings of a run: the app and every argument but the input image."""
    settings = {"app": app.strip("/"), "arguments": {k: v for k, v in arguments.items() if k != "image_url"}}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Manifest:
    """The manifest of one output directory, kept at ``path`` (thread-safe appends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.made: dict[str, str] = self._load()
        self._lock = threading.Lock()

    def _load(self) -> dict[str, str]:
        made: dict[str, str] = {}
        try:
            lines = self.path.read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return made
        for line in lines:
            try:
                entry = json.loads(line)
                made[entry["output"]] = entry["settings"]
            except (ValueError, KeyError, TypeError):
                log.debug("ignoring a malformed line of %s", self.path)
        return made

    def made_with(self, output: Path) -> str | None:
        """The fingerprint an existing output was made with (None: not recorded)."""
        return self.made.get(output.name)

    def record(self, output: Path, source: str, app: str, settings: str) -> None:
        """Note what made ``output``; a manifest that cannot be written only loses that note."""
        entry = {"output": output.name, "dir": str(output.parent.resolve()), "source": source, "app": app,
                 "settings": settings}
        with self._lock:
            self.made[output.name] = settings
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as f:
                    f.write(json.dumps(entry) + "\n")
            except OSError as exc:
                log.warning("cannot record %s in %s: %s", output.name, self.path, exc)
