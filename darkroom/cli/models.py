"""`darkroom models list | pull NAME`: the diffusion models this installation knows, and fetching them.

Workers never download (they run with ``HF_HUB_OFFLINE=1``); `pull` is the one place that does, into
``DARKROOM_MODELS_DIR``, and needs network access to the Hugging Face Hub.
"""

from __future__ import annotations

import click

from darkroom.models import (
    IGNORE_PATTERNS,
    ModelsConfigError,
    ModelSpec,
    all_models,
    get_model,
    use_models_config,
)
from darkroom.settings import Settings


def _settings() -> Settings:
    settings = Settings()
    try:
        use_models_config(settings)
    except ModelsConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


@click.group()
def models() -> None:
    """Diffusion models: list them, pull them into DARKROOM_MODELS_DIR."""


@models.command("list")
def list_models() -> None:
    """Every known model: name, app, source (repo or folder) and whether it is on disk."""
    settings = _settings()
    rows = [("NAME", "APP", "SOURCE", "PRESENT")]
    for spec in all_models():
        present = "yes" if spec.is_present(settings.models_dir) else "no"
        rows.append((spec.name, spec.kind, spec.source, present))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3])
    click.echo(f"\nmodels dir: {settings.models_dir}")


def _known(name: str) -> ModelSpec:
    spec = get_model(name)
    if spec is None:
        names = ", ".join(m.name for m in all_models())
        raise click.ClickException(f"unknown model {name!r}; known models: {names}")
    return spec


@models.command()
@click.argument("name")
def pull(name: str) -> None:
    """Download model NAME from the Hugging Face Hub into DARKROOM_MODELS_DIR (shows a progress bar)."""
    settings = _settings()
    spec = _known(name)
    if spec.repo is None:
        raise click.ClickException(f"{name} is a local model ({spec.path}); there is nothing to pull")
    target = spec.local_dir(settings.models_dir)
    click.echo(f"pulling {spec.repo} into {target}")
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(
            repo_id=spec.repo, local_dir=target,
            allow_patterns=list(spec.allow_patterns), ignore_patterns=list(IGNORE_PATTERNS),
        )
    except Exception as exc:  # an entry point: every failure becomes one clear message
        raise click.ClickException(
            f"could not download {spec.repo} ({type(exc).__name__}: {exc}). `darkroom models pull` needs "
            f"network access to the Hugging Face Hub (and HF_HUB_OFFLINE unset); on a machine without it, "
            f"copy a downloaded diffusers folder of the model to {target}"
        ) from None
    if not spec.is_present(settings.models_dir):
        raise click.ClickException(f"downloaded {spec.repo}, but {target} has no model_index.json")
    click.echo(f"{name} is ready in {target}")
