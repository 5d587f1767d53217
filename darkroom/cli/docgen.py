"""Generate the settings reference (docs/configuration.md and the table in README.md) from Settings.

Run `python -m darkroom.cli.docgen` (or `make docs`); a test fails when the committed files are stale.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Literal, get_args, get_origin

from pydantic_core import PydanticUndefined

from darkroom.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- settings:start -->", "<!-- settings:end -->"
log = logging.getLogger(__name__)


def _type_name(annotation) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " / ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])} (comma-separated)"
    if args:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " (optional)"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    value = field.default
    if value is PydanticUndefined or value is None or value == "":
        return "—"
    return f"`{value}`"


def settings_table() -> str:
    rows = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        desc = (field.description or "").replace("|", "\\|")
        env = f"DARKROOM_{name.upper()}"
        rows.append(f"| `{env}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
    return "\n".join(rows)


def configuration_md() -> str:
    return (
        "# Configuration reference\n\n"
        "Generated from `darkroom/settings.py` by `python -m darkroom.cli.docgen`; do not edit by hand.\n\n"
        "Every part of Darkroom (API, workers, CLI) reads one settings object from environment variables\n"
        "with the prefix `DARKROOM_`. Durations carry their unit in the name (`_s`, `_ms`).\n\n"
        f"{settings_table()}\n"
    )


def readme_with_table(readme: str) -> str:
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{settings_table()}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "configuration.md").write_text(configuration_md())
    readme = ROOT / "README.md"
    readme.write_text(readme_with_table(readme.read_text()))
    log.warning("wrote docs/configuration.md and the settings table in README.md")


if __name__ == "__main__":
    main()
