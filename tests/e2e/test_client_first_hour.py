"""A new user's first hour with the session API and a real worker: `-o` picks the image format, and
`darkroom submit` says why it skips, redoes with --overwrite, keeps quiet with --quiet and reports
each failure once."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from darkroom.cli import main
from darkroom.cli.state import submit_record
from darkroom.client.formats import sniff
from tests.support.images import gradient, png_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def pixels(path: Path) -> np.ndarray:
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def is_grey(path: Path) -> bool:
    rgb = pixels(path)
    return int((rgb.max(axis=2) - rgb.min(axis=2)).max()) <= 3  # JPEG may wobble a little


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("one", "two"):
        (folder / f"{name}.png").write_bytes(png_bytes(gradient(24, 16)))
    return folder


# ---- 5. the extension of -o chooses the format ----------------------------------------------------
def test_run_writes_the_format_the_output_extension_names(api_url, worker, photos, tmp_path):
    for name, fmt in (("out.jpg", "jpeg"), ("out.JPEG", "jpeg"), ("out.webp", "webp"), ("out.png", "png")):
        target = tmp_path / name
        done = cli("run", str(photos / "one.png"), "-o", str(target), "--set", "enable_desaturate=true",
                   "--server", api_url)
        assert done.exit_code == 0, done.output
        assert sniff(target.read_bytes()) == fmt, name
        assert pixels(target).shape == (16, 24, 3) and is_grey(target)

    refused = cli("run", str(photos / "one.png"), "-o", str(tmp_path / "out.gif"), "--server", api_url)
    assert refused.exit_code == 2 and not (tmp_path / "out.gif").exists()
    assert "out.gif has extension '.gif'; the extension chooses the image format: use one of .png, .jpg, " \
        ".jpeg, .webp" in refused.stderr
    clash = cli("run", str(photos / "one.png"), "-o", str(tmp_path / "x.jpg"), "--set", "output_format=png",
                "--server", api_url)
    assert clash.exit_code == 2 and "--set output_format=png contradicts" in clash.stderr


# ---- 11. darkroom submit: why it skips, --overwrite, --quiet, failures once ----------------------
def test_submit_explains_skips_redoes_with_overwrite_and_reports_failures_once(
    api_url, worker, photos, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (photos / "broken.png").write_text("this is not an image")
    out = tmp_path / "out"
    base = ["submit", str(photos), "-o", str(out), "--server", api_url, "-j", "2"]

    first = cli(*base)
    assert first.exit_code == 1, first.output
    assert "2 done, 0 skipped (output exists), 1 failed" in first.stdout
    assert first.stderr.count("broken.png") == 1, "each failure is printed once"
    assert "3/3" in first.stderr  # the progress bar
    plain = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(plain) == ["one.png", "two.png"] and not is_grey(out / "one.png")  # results only
    manifest = [json.loads(line) for line in submit_record(out).read_text().splitlines()]
    assert sorted(e["output"] for e in manifest) == ["one.png", "two.png"]
    assert submit_record(out).is_relative_to(tmp_path / "state" / "darkroom")

    (photos / "broken.png").unlink()
    other = cli(*base, "--set", "enable_desaturate=true")
    assert other.exit_code == 0, other.output
    assert "0 done, 2 skipped (output exists), 0 failed" in other.stdout
    why = "2 skipped: outputs exist (2 made with other settings); use --overwrite to redo them"
    assert why in other.stderr
    assert "skipped " not in other.stderr, "no line per skipped file unless --verbose"
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == plain

    redo = cli(*base, "--set", "enable_desaturate=true", "--overwrite", "--quiet")
    assert redo.exit_code == 0, redo.output
    assert redo.stdout.strip() == "2 done, 0 skipped (output exists), 0 failed"
    assert redo.stderr.strip() == "", "--quiet: no progress bar, no per-file lines"
    assert is_grey(out / "one.png") and is_grey(out / "two.png")

    same = cli(*base, "--set", "enable_desaturate=true", "--verbose")
    assert "2 skipped: outputs exist; use --overwrite to redo them" in same.stderr  # same settings now
    assert f"skipped {photos / 'one.png'}: {out / 'one.png'} exists" in same.stderr

    (photos / "broken.png").write_text("still not an image")
    quiet = cli(*base, "--set", "enable_desaturate=true", "--quiet")
    assert quiet.exit_code == 1
    assert quiet.stdout.strip() == "0 done, 2 skipped (output exists), 1 failed"
    lines = quiet.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"failed  {photos / 'broken.png'}: HTTP 422")
    assert lines[1] == "2 skipped: outputs exist; use --overwrite to redo them"
