"""Fonts for the ``overlay`` step: DejaVu Sans (regular and bold, Bitstream Vera licence, see LICENSE
in this folder) ships with the package; any ``.ttf`` / ``.otf`` in ``DARKROOM_FONTS_DIR`` is added under
its file name without the extension."""

from __future__ import annotations

from pathlib import Path

PACKAGED = {
    "dejavu-sans": Path(__file__).with_name("DejaVuSans.ttf"),
    "dejavu-sans-bold": Path(__file__).with_name("DejaVuSans-Bold.ttf"),
}
FONT_SUFFIXES = (".ttf", ".otf")


def font_key(name: str) -> str:
    """Names compare without case, with spaces and underscores as hyphens: 'DejaVu Sans' = 'dejavu-sans'."""
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def available_fonts(fonts_dir: Path | str | None = None) -> dict[str, Path]:
    """Every font a step may name: the packaged ones, then those in ``fonts_dir``."""
    fonts = dict(PACKAGED)
    if fonts_dir:
        folder = Path(fonts_dir)
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in FONT_SUFFIXES and path.is_file():
                    fonts.setdefault(font_key(path.stem), path)
    return fonts


def find_font(name: str, fonts_dir: Path | str | None = None) -> Path | None:
    return available_fonts(fonts_dir).get(font_key(name))
