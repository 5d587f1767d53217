"""Docs generated from code must match the code."""

from __future__ import annotations

from pathlib import Path

from darkroom.cli.docgen import configuration_md, readme_with_table

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_reference_is_fresh():
    assert (ROOT / "docs" / "configuration.md").read_text() == configuration_md(), "run `make docs`"


def test_readme_settings_table_is_fresh():
    readme = (ROOT / "README.md").read_text()
    assert readme == readme_with_table(readme), "run `make docs`"
