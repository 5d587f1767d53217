"""`darkroom models list | pull NAME`: the models this installation knows (diffusion, restore, matte),
and fetching them.

Workers never download (they run with ``HF_HUB_OFFLINE=1``); `pull` is the one place that does, into
``DARKROOM_MODELS_DIR``: from the Hugging Face Hub, or, for a model published as one file, from its URL
(checked against its md5).
"""

from __future__ import annotations

from pathlib import Path

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
    """Models for the diffusion apps and the pipeline's model steps: list them, pull them into
    DARKROOM_MODELS_DIR."""


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
    """Download model NAME into DARKROOM_MODELS_DIR, from the Hugging Face Hub or its published URL
    (shows a progress bar)."""
    settings = _settings()
    spec = _known(name)
    if spec.url is not None:
        _pull_file(spec, spec.local_dir(settings.models_dir))
        click.echo(f"{name} is ready in {spec.local_dir(settings.models_dir)}")
        return
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
        raise click.ClickException(f"downloaded {spec.repo}, but {target} has no {spec.marker}")
    click.echo(f"{name} is ready in {target}")


def _pull_file(spec: ModelSpec, target: Path) -> None:
    """Download a model published as one file to ``target/<marker>``, with a progress bar, checking
    its md5 before it takes the file's place."""
    import hashlib

    import httpx
    from tqdm import tqdm

    target.mkdir(parents=True, exist_ok=True)
    final = target / spec.marker
    part = final.with_name(final.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    click.echo(f"pulling {spec.url} into {final}")
    try:
        with httpx.stream("GET", str(spec.url), follow_redirects=True, timeout=60) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length") or 0) or None
            with part.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=spec.name) as bar:
                for chunk in resp.iter_bytes(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except httpx.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise click.ClickException(
            f"could not download {spec.url} ({type(exc).__name__}: {exc}); on a machine without network "
            f"access, download it elsewhere and copy it to {final}"
        ) from None
    if spec.md5 and digest.hexdigest() != spec.md5:
        part.unlink(missing_ok=True)
        raise click.ClickException(f"{spec.url}: md5 {digest.hexdigest()}, expected {spec.md5}; not kept")
    part.replace(final)
