"""`darkroom submit | run | status | cancel`: use a running Darkroom server from the shell.

Every command talks HTTP to ``--server`` (env DARKROOM_SERVER, default http://127.0.0.1:8000) with
``--key`` (env DARKROOM_API_KEY) through ``darkroom.client``; none of them needs Redis or torch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from darkroom.cli.client_display import echo_status, print_report, progress_bar
from darkroom.cli.pipeline_options import (
    PIPELINE,
    pipeline_output,
    pipeline_request,
    recipe_option,
    steps_option,
)
from darkroom.cli.state import submit_record
from darkroom.client import (
    DEFAULT_SERVER,
    Client,
    DarkroomClientError,
    InvalidKey,
    UnknownApp,
    UnknownParameter,
)
from darkroom.client.batch import URL_SCHEMES, Item, Uploader, expand_inputs, plan, process, run_batch
from darkroom.client.errors import check_key
from darkroom.client.formats import UnsupportedOutput, format_for
from darkroom.client.manifest import Manifest

DEFAULT_APP = "fal-ai/post-processing"

server_option = click.option(
    "--server", envvar="DARKROOM_SERVER", default=DEFAULT_SERVER, show_default=True, metavar="URL",
    help="Darkroom server (env DARKROOM_SERVER).",
)
key_option = click.option(
    "--key", envvar="DARKROOM_API_KEY", default=None, metavar="KEY",
    help="API key, sent as 'Authorization: Key <key>' (env DARKROOM_API_KEY).",
)
app_option = click.option(
    "--app", default=DEFAULT_APP, show_default=True, metavar="APP_ID",
    help="App to run, e.g. fal-ai/post-processing/blur (see the server's /openapi.json).",
)
set_option = click.option(
    "--set", "pairs", multiple=True, metavar="KEY=VALUE",
    help="An input field; repeatable. VALUE is read as JSON when it parses (numbers, true/false, null, "
    "lists), else as a string: --set enable_blur=true --set blur_radius=5 --set tint_mode=sepia. "
    "Names the app does not have are refused, with the closest one suggested.",
)
no_check_option = click.option(
    "--no-check", is_flag=True,
    help="Send --set names without checking them against the app's input fields (for fields newer "
    "than this client; the server ignores names it does not know).",
)
timeout_option = click.option(
    "--timeout", "timeout_s", type=float, default=600.0, show_default=True, metavar="SECONDS",
    help="Give up on a request that has not finished after this long.",
)


def parse_sets(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs → input fields (values parsed as JSON when possible, else strings)."""
    fields: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        try:
            fields[key.strip()] = json.loads(raw)
        except ValueError:
            fields[key.strip()] = raw
    return fields


@contextmanager
def connected(server: str, key: str | None, strict: bool = True) -> Iterator[Client]:
    """A Client whose failures become click errors: usage errors (exit 2) for what the command line
    got wrong (a --set name, --app, --key), one-line errors (exit 1) for the rest."""
    try:
        if key is not None:
            key = check_key(key, "--key / $DARKROOM_API_KEY")
        with Client(server, key, strict=strict) as client:
            yield client
    except UnknownParameter as exc:
        raise click.BadParameter(f"{exc.message} (--no-check sends it anyway)", param_hint="--set") from None
    except UnknownApp as exc:
        raise click.BadParameter(exc.message, param_hint="--app") from None
    except InvalidKey as exc:
        raise click.BadParameter(exc.message, param_hint="--key") from None
    except DarkroomClientError as exc:
        raise click.ClickException(exc.message) from None
    except OSError as exc:  # reading an input, writing an output
        raise click.ClickException(f"{exc.strerror or exc}: {exc.filename}") from None


@click.command(short_help="Process many images into a directory (client).")
@click.argument("images", nargs=-1, required=True)
@app_option
@set_option
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the results (created if missing); one file per input, named after it, "
              "with the extension of --set output_format (png, jpeg, webp; default png).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Requests in flight at once.")
@click.option("--overwrite", is_flag=True,
              help="Process every input again, even those whose output exists (by default they are "
              "skipped, so re-running an interrupted batch resumes it).")
@click.option("-q", "--quiet", is_flag=True, help="Print only failures and the summary (no progress bar).")
@click.option("-v", "--verbose", is_flag=True, help="Also list each skipped input.")
@recipe_option
@steps_option
@no_check_option
@timeout_option
@server_option
@key_option
def submit(
    images: tuple[str, ...], app: str, pairs: tuple[str, ...], outdir: Path, jobs: int, overwrite: bool,
    quiet: bool, verbose: bool, recipe: str | None, steps_file: Path | None, no_check: bool,
    timeout_s: float, server: str, key: str | None,
) -> None:
    """Process many images: IMAGES are files, directories (their images), globs or http(s) URLs.

    Local files are uploaded (POST /storage/upload) and each result is saved as OUTDIR/<name>.<ext>.
    Inputs whose output already exists are skipped (--overwrite redoes them), so re-running an
    interrupted batch resumes it; the settings of each output are noted (in ~/.local/state/darkroom/),
    so skipped outputs made with other settings are pointed out. A failing input is reported once and
    the rest go on; the exit status is 1 if any failed.

    \b
    Example:
      darkroom submit photos/ extra/*.jpg https://example.com/a.png -o out/ -j 8 \\
          --set enable_grain=true --set grain_style=kodak
      darkroom submit photos/ --recipe web-optimise -o out/
    """
    app, arguments = pipeline_request(app, DEFAULT_APP, parse_sets(pairs), recipe, steps_file)
    sources, problems = expand_inputs(images)
    for source, why in problems:
        click.echo(f"failed  {source}: {why}", err=True)
    with connected(server, key, strict=not no_check) as client:
        client.check(app, {**arguments, "image_url": ""})
        fmt = arguments.get("output_format", "png")
        if app == PIPELINE:
            fmt = pipeline_output(client, arguments).get("format", "png")
        items = plan(sources, outdir, fmt)
        client.ping()  # one clear error, rather than one per input, when no server answers
        with progress_bar(quiet) as bar:
            report = run_batch(client, app, arguments, items, jobs, timeout_s, bar.tick, overwrite,
                               Manifest(submit_record(outdir)), bar.start)
    report.failed[:0] = problems
    print_report(report, verbose)
    if report.failed:
        sys.exit(1)


@click.command(name="run", short_help="Process one image and save the result (client).")
@click.argument("image")
@app_option
@set_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the (first) result image here, in the format its extension names (.png, .jpg, "
              ".jpeg, .webp); without it the result JSON is printed.")
@recipe_option
@steps_option
@no_check_option
@timeout_option
@server_option
@key_option
def run_one(
    image: str, app: str, pairs: tuple[str, ...], output: Path | None, recipe: str | None,
    steps_file: Path | None, no_check: bool, timeout_s: float, server: str, key: str | None,
) -> None:
    """Process one IMAGE (a file or an http(s) URL), wait for it and save the result.

    Status changes and log lines are shown on stderr as they happen (steps as a progress bar).

    \b
    Example:
      darkroom run photo.jpg --set enable_vignette=true -o photo-vignette.jpg
      darkroom run photo.jpg --recipe film-look -o photo-film.jpg
    """
    app, arguments = pipeline_request(app, DEFAULT_APP, parse_sets(pairs), recipe, steps_file)
    _check_image(image)
    fmt = _output_format(output, arguments) if output is not None else None
    with connected(server, key, strict=not no_check) as client:
        client.check(app, {**arguments, "image_url": ""})
        uploader = Uploader(client)
        if output is not None:
            fields = client.input_fields(app)  # an app without output_format: converted on arrival
            if app == PIPELINE:  # the pipeline's output block, with the format -o names
                arguments = {**arguments, "output": {**pipeline_output(client, arguments), "format": fmt}}
            elif fields is None or "output_format" in fields:
                arguments = {**arguments, "output_format": fmt}
            with echo_status() as on_update:
                written = process(client, uploader, app, arguments, Item(image, output), timeout_s, on_update)
            click.echo("\n".join(str(p) for p in written))
            return
        body = {**arguments, "image_url": uploader.image_url(Item(image, Path()))}
        with echo_status() as on_update:
            result = client.subscribe(app, body, on_update=on_update, timeout_s=timeout_s)
        click.echo(result.model_dump_json(indent=2, exclude_none=True))


def _check_image(image: str) -> None:
    """A local IMAGE must be a readable file (a URL is the server's to fetch)."""
    if image.startswith(URL_SCHEMES):
        return
    path = Path(image).expanduser()
    if not path.exists():
        raise click.BadParameter(f"{image}: no such file (give an image file or an http(s) URL)",
                                 param_hint="IMAGE")
    if not path.is_file():
        raise click.BadParameter(f"{image} is not a file", param_hint="IMAGE")


def _output_format(output: Path, arguments: dict[str, Any]) -> str:
    """The format -o names by its extension (which --set output_format must not contradict)."""
    hint = "'-o' / '--output'"
    try:
        fmt = format_for(output)
    except UnsupportedOutput as exc:
        raise click.BadParameter(exc.message, param_hint=hint) from None
    asked = str(arguments.get("output_format", fmt)).lower()
    if asked.replace("jpg", "jpeg") != fmt:
        raise click.BadParameter(
            f"--set output_format={asked} contradicts {output} ({fmt}); leave output_format out: the "
            "extension of -o chooses it", param_hint=hint,
        )
    return fmt


@click.command(short_help="Print a request's status as JSON (client).")
@click.argument("request_id")
@app_option
@click.option("--logs/--no-logs", default=False, help="Include the request's log lines.")
@server_option
@key_option
def status(request_id: str, app: str, logs: bool, server: str, key: str | None) -> None:
    """Print the status of REQUEST_ID as JSON (IN_QUEUE, IN_PROGRESS or COMPLETED)."""
    with connected(server, key) as client:
        current = client.status(app, request_id, logs=logs)
    click.echo(current.model_dump_json(indent=2, exclude_none=True))


@click.command(short_help="Cancel a request (client).")
@click.argument("request_id")
@app_option
@server_option
@key_option
def cancel(request_id: str, app: str, server: str, key: str | None) -> None:
    """Cancel REQUEST_ID; prints CANCELLATION_REQUESTED or ALREADY_COMPLETED."""
    with connected(server, key) as client:
        click.echo(client.cancel(app, request_id))


COMMANDS = (submit, run_one, status, cancel)


def register(group: click.Group) -> None:
    """Add the client commands to the `darkroom` group."""
    from darkroom.cli.recipes import recipes  # it imports this module's options

    for command in (*COMMANDS, recipes):
        group.add_command(command)
