"""`darkroom recipes list | show | save | delete`: saved pipelines of the darkroom/pipeline app (client)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from darkroom.cli.client_commands import connected, key_option, server_option
from darkroom.cli.pipeline_options import read_pipeline


@click.group(short_help="List, show, save and delete saved pipelines (client).")
def recipes() -> None:
    """Recipes are saved pipelines for the darkroom/pipeline app: the built-ins (read-only) and
    your own (per API key; every save is a new version). Run one with
    `darkroom run photo.jpg --recipe web-optimise -o out.webp` or
    `darkroom submit photos/ --recipe web-optimise -o out/`."""


def _client_options(fn):
    return server_option(key_option(fn))


@recipes.command(name="list")
@_client_options
def list_recipes(server: str, key: str | None) -> None:
    """One line per recipe: name, version, built-in or yours, description."""
    with connected(server, key) as client:
        for r in client.recipes():
            owner = "built-in" if r.get("builtin") else "yours"
            click.echo(f"{r['name']:<24} v{r['version']:<3} {owner:<9} {r.get('description', '')}")


@recipes.command()
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), default=None, help="An earlier version.")
@_client_options
def show(name: str, version: int | None, server: str, key: str | None) -> None:
    """Print recipe NAME as JSON (steps and output block)."""
    with connected(server, key) as client:
        click.echo(json.dumps(client.recipe(name, version), indent=2))


@recipes.command()
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--description", default="", help="What the recipe is for.")
@_client_options
def save(name: str, file: Path, description: str, server: str, key: str | None) -> None:
    """Save the pipeline in FILE (JSON, as for --steps) as a new version of recipe NAME.

    \b
    Example:
      echo '[{"op": "resize", "width": 800}, {"op": "effects", "enable_sharpen": true}]' > small.json
      darkroom recipes save small-sharp small.json --description "800 px, sharpened"
    """
    pipeline = read_pipeline(file)
    with connected(server, key) as client:
        saved = client.save_recipe(name, pipeline["steps"], pipeline.get("output"), description)
    click.echo(f"saved {saved['name']} v{saved['version']}")


@recipes.command()
@click.argument("name")
@_client_options
def delete(name: str, server: str, key: str | None) -> None:
    """Delete recipe NAME and all its versions."""
    with connected(server, key) as client:
        client.delete_recipe(name)
    click.echo(f"deleted {name}")
