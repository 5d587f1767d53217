"""`darkroom submit | run | status | cancel`: use a running Darkroom server from the shell.

Every command talks HTTP to ``--server`` (env DARKROOM_SERVER, default http://127.0.0.1:8000) with
``--key`` (env DARKROOM_API_KEY) through ``darkroom.client``; none of them needs Redis or torch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx

from darkroom.client import DEFAULT_SERVER, Client, DarkroomClientError, Status
from darkroom.client.batch import Item, Report, Uploader, expand_inputs, plan, process, run_batch

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
    "lists), else as a string: --set enable_blur=true --set blur_radius=5 --set tint_mode=sepia.",
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
def connected(server: str, key: str | None) -> Iterator[Client]:
    """A Client whose failures become one-line CLI errors."""
    try:
        with Client(server, key) as client:
            yield client
    except DarkroomClientError as exc:
        raise click.ClickException(exc.message) from None
    except httpx.TransportError as exc:
        raise click.ClickException(f"cannot reach {server}: {exc}") from None


@click.command(short_help="Process many images into a directory (client).")
@click.argument("images", nargs=-1, required=True)
@app_option
@set_option
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for the results (created if missing); one file per input, named after it.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Requests in flight at once.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@timeout_option
@server_option
@key_option
def submit(
    images: tuple[str, ...], app: str, pairs: tuple[str, ...], outdir: Path, jobs: int, quiet: bool,
    timeout_s: float, server: str, key: str | None,
) -> None:
    """Process many images: IMAGES are files, directories (their images), globs or http(s) URLs.

    Local files are uploaded (POST /storage/upload) and each result is saved as OUTDIR/<name>.<ext>.
    Inputs whose output already exists are skipped, so re-running an interrupted batch resumes it.
    A failing input is reported and the rest go on; the exit status is 1 if any failed.

    \b
    Example:
      darkroom submit photos/ extra/*.jpg https://example.com/a.png -o out/ -j 8 \\
          --set enable_grain=true --set grain_style=kodak
    """
    arguments = parse_sets(pairs)
    sources, problems = expand_inputs(images)
    items = plan(sources, outdir, arguments.get("output_format", "png"))
    with connected(server, key) as client, _progress_bar(len(items), quiet) as tick:
        report = run_batch(client, app, arguments, items, jobs, timeout_s, tick)
    report.failed[:0] = problems
    _print_report(report)
    if report.failed:
        sys.exit(1)


@contextmanager
def _progress_bar(total: int, quiet: bool) -> Iterator[Callable[[Item, str | None], None]]:
    from tqdm import tqdm

    with tqdm(total=total, unit="img", desc="processing", disable=quiet, file=sys.stderr) as bar:
        def tick(item: Item, error: str | None) -> None:
            if error:
                bar.write(f"FAILED {item.source}: {error}", file=sys.stderr)
            bar.update(1)

        yield tick


def _print_report(report: Report) -> None:
    for item in report.skipped:
        click.echo(f"skipped {item.source}: {item.output} exists", err=True)
    for source, why in report.failed:
        click.echo(f"failed  {source}: {why}", err=True)
    click.echo(report.summary())


@click.command(name="run", short_help="Process one image and save the result (client).")
@click.argument("image")
@app_option
@set_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the (first) result image here; without it the result JSON is printed.")
@timeout_option
@server_option
@key_option
def run_one(
    image: str, app: str, pairs: tuple[str, ...], output: Path | None, timeout_s: float, server: str,
    key: str | None,
) -> None:
    """Process one IMAGE (a file or an http(s) URL), wait for it and save the result.

    Status changes and log lines are shown on stderr as they happen.

    \b
    Example:
      darkroom run photo.jpg --set enable_vignette=true -o photo-vignette.png
    """
    arguments = parse_sets(pairs)
    with connected(server, key) as client:
        uploader = Uploader(client)
        if output is not None:
            item = Item(image, output)
            written = process(client, uploader, app, arguments, item, timeout_s, _echo_status())
            click.echo("\n".join(str(p) for p in written))
            return
        body = {**arguments, "image_url": uploader.image_url(Item(image, Path()))}
        result = client.subscribe(app, body, on_update=_echo_status(), timeout_s=timeout_s)
        click.echo(result.model_dump_json(indent=2, exclude_none=True))


def _echo_status() -> Callable[[Status], None]:
    shown = 0

    def echo(status: Status) -> None:
        nonlocal shown
        where = f" (position {status.queue_position})" if status.queue_position is not None else ""
        click.echo(f"{status.status}{where}", err=True)
        for entry in status.logs[shown:]:
            click.echo(f"  [{entry.level}] {entry.message}", err=True)
        shown = len(status.logs)

    return echo


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
    for command in COMMANDS:
        group.add_command(command)
