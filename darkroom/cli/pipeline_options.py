"""The `--recipe` / `--steps` options that send `darkroom run` and `darkroom submit` through the
darkroom/pipeline app (the `darkroom recipes` commands are in darkroom/cli/recipes.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

PIPELINE = "darkroom/pipeline"

recipe_option = click.option(
    "--recipe", default=None, metavar="NAME",
    help="Run a saved pipeline (`darkroom recipes list`) through the darkroom/pipeline app.",
)
steps_option = click.option(
    "--steps", "steps_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    metavar="FILE",
    help="Run the pipeline in FILE (JSON: a list of steps, or {\"steps\": […], \"output\": {…}}).",
)


def read_pipeline(path: Path) -> dict[str, Any]:
    """A pipeline file: a list of steps, or an object holding ``steps`` (and maybe ``output``)."""
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise click.BadParameter(f"{path} is not JSON: {exc}", param_hint="--steps") from None
    if isinstance(data, list):
        return {"steps": data}
    if isinstance(data, dict) and isinstance(data.get("steps"), list):
        return {k: data[k] for k in ("steps", "output") if k in data}
    raise click.BadParameter(f"{path}: give a list of steps or an object with steps", param_hint="--steps")


def pipeline_request(
    app: str, default_app: str, arguments: dict[str, Any], recipe: str | None, steps_file: Path | None
) -> tuple[str, dict[str, Any]]:
    """(app, arguments) with --recipe / --steps applied; unchanged without them."""
    if recipe is None and steps_file is None:
        return app, arguments
    if recipe is not None and steps_file is not None:
        raise click.UsageError("give --recipe or --steps, not both")
    if app not in (default_app, PIPELINE):
        raise click.BadParameter(f"--recipe and --steps run {PIPELINE}; leave --app out", param_hint="--app")
    extra = {"recipe": recipe} if recipe is not None else read_pipeline(steps_file)  # type: ignore[arg-type]
    return PIPELINE, {**arguments, **extra}


def pipeline_output(client: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """The output block the pipeline will use: the request's, else its recipe's, else the default."""
    if isinstance(arguments.get("output"), dict):
        return dict(arguments["output"])
    if arguments.get("recipe"):
        return dict(client.recipe(arguments["recipe"]).get("output") or {})
    return {}
