"""Pipelines from the Python client and the CLI: `darkroom recipes …`, `run`/`submit --recipe`, `--steps`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from darkroom.cli import main
from darkroom.client import Client, DarkroomClientError
from tests.support.images import gradient, png_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def cli(api_url: str, *args: str):
    result = CliRunner().invoke(main, [*args, "--server", api_url], catch_exceptions=False)
    return result


def write_png(path: Path, width: int = 80, height: int = 60) -> Path:
    path.write_bytes(png_bytes(gradient(width, height)))
    return path


def test_client_saves_reads_and_deletes_recipes(api_url, worker):
    name = f"client-{uuid.uuid4().hex[:8]}"
    with Client(api_url) as client:
        assert "web-optimise" in {r["name"] for r in client.recipes()}
        saved = client.save_recipe(name, [{"op": "resize", "width": 10}], {"format": "webp"}, "tiny")
        assert saved["version"] == 1 and saved["output"]["format"] == "webp"
        assert client.recipe(name)["description"] == "tiny"
        client.delete_recipe(name)
        with pytest.raises(DarkroomClientError) as err:
            client.recipe(name)
        assert err.value.status_code == 404


def test_run_with_a_recipe_writes_the_format_the_extension_names(api_url, worker, tmp_path):
    src = write_png(tmp_path / "photo.png", 120, 80)
    out = tmp_path / "square.webp"
    result = cli(api_url, "run", str(src), "--recipe", "square-product", "-o", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.format == "WEBP" and im.size == (1024, 1024)


def test_submit_a_folder_with_steps_file_and_a_saved_recipe(api_url, worker, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        write_png(photos / f"p{i}.png", 64 + i, 48)
    steps = tmp_path / "thumb.json"
    steps.write_text(json.dumps({"steps": [{"op": "crop", "aspect_ratio": 1}, {"op": "resize", "width": 20}],
                                 "output": {"format": "jpeg", "quality": 80}}))
    result = cli(api_url, "submit", str(photos), "--steps", str(steps), "-o", str(tmp_path / "a"), "-q")
    assert result.exit_code == 0, result.output
    outs = sorted((tmp_path / "a").iterdir())
    assert [p.name for p in outs] == ["p0.jpg", "p1.jpg", "p2.jpg"]
    assert all(Image.open(p).size == (20, 20) for p in outs)

    name = f"thumb-{uuid.uuid4().hex[:8]}"
    saved = cli(api_url, "recipes", "save", name, str(steps), "--description", "20 px squares")
    assert saved.exit_code == 0 and f"saved {name} v1" in saved.output
    listed = cli(api_url, "recipes", "list")
    assert name in listed.output and "built-in" in listed.output
    result = cli(api_url, "submit", str(photos), "--recipe", name, "-o", str(tmp_path / "b"), "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]
    shown = json.loads(cli(api_url, "recipes", "show", name).output)
    assert shown["steps"][1]["width"] == 20
    assert cli(api_url, "recipes", "delete", name).exit_code == 0


def test_recipe_and_app_conflict_is_a_usage_error(api_url, tmp_path):
    src = write_png(tmp_path / "x.png")
    result = cli(api_url, "run", str(src), "--recipe", "film-look", "--app", "fal-ai/post-processing/blur")
    assert result.exit_code == 2 and "leave --app out" in result.output


def test_async_client_has_the_recipe_methods(api_url):
    import asyncio

    from darkroom.client import AsyncClient

    sync_public = {n for n in dir(Client) if not n.startswith("_")}
    async_public = {n for n in dir(AsyncClient) if not n.startswith("_")}
    assert {"recipes", "recipe", "save_recipe", "delete_recipe"} <= sync_public & async_public

    async def roundtrip() -> tuple[int, str]:
        name = f"async-{uuid.uuid4().hex[:8]}"
        async with AsyncClient(api_url) as client:
            saved = await client.save_recipe(name, [{"op": "crop", "aspect_ratio": 1}])
            got = await client.recipe(name)
            await client.delete_recipe(name)
            return saved["version"], got["name"]

    assert asyncio.run(roundtrip())[0] == 1


def test_avif_outputs_are_named_and_kept_as_avif(api_url, worker, tmp_path):
    from darkroom.client.formats import sniff

    src = write_png(tmp_path / "photo.png", 40, 30)
    out = tmp_path / "small.avif"
    result = cli(api_url, "run", str(src), "--steps", str(_steps_file(tmp_path)), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert sniff(out.read_bytes()) == "avif"


def _steps_file(tmp_path: Path) -> Path:
    path = tmp_path / "steps.json"
    path.write_text(json.dumps([{"op": "resize", "width": 20}]))
    return path
