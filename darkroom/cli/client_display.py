"""What the client commands show while they work: progress bars, status lines, the final report.

Everything goes to stderr except the summary of `darkroom submit`, so stdout stays parseable.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from tqdm import tqdm

from darkroom.client import Status
from darkroom.client.batch import Item, Report

STEP = re.compile(r"\bstep (\d+)/(\d+)\b")


class BatchProgress:
    """The bar of `darkroom submit`: sized once the work is known, one tick per processed input;
    failures are printed above it as they happen (and nowhere else)."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def start(self, total: int) -> None:
        self.bar.reset(total=total)

    def tick(self, item: Item, error: str | None) -> None:
        if error:
            self.bar.write(f"failed  {item.source}: {error}", file=sys.stderr)
        self.bar.update(1)


@contextmanager
def progress_bar(quiet: bool) -> Iterator[BatchProgress]:
    with tqdm(total=0, unit="img", desc="processing", disable=quiet, file=sys.stderr) as bar:
        yield BatchProgress(bar)


def print_report(report: Report, verbose: bool = False) -> None:
    """The summary on stdout; why inputs were skipped (and, with ``verbose``, which) on stderr."""
    if verbose:
        for item in report.skipped:
            other = " (made with other settings)" if item in report.stale else ""
            click.echo(f"skipped {item.source}: {item.output} exists{other}", err=True)
    click.echo(report.summary())
    if report.skipped:
        click.echo(skip_reason(report), err=True)


def skip_reason(report: Report) -> str:
    """E.g. ``9 skipped: outputs exist (9 made with other settings); use --overwrite to redo them``."""
    n, stale = len(report.skipped), len(report.stale)
    why = "outputs exist" if n > 1 else "output exists"
    if stale:
        why += f" ({stale} made with other settings)"
    return f"{n} skipped: {why}; use --overwrite to redo {'them' if n > 1 else 'it'}"


class RunDisplay:
    """`darkroom run`'s view of one request: status changes and log lines on stderr; log lines that
    say ``step i/n`` (diffusion apps) drive a progress bar instead."""

    def __init__(self) -> None:
        self.shown = 0
        self.last = ""
        self.bar: tqdm | None = None

    def __call__(self, status: Status) -> None:
        where = f" (position {status.queue_position})" if status.queue_position is not None else ""
        if f"{status.status}{where}" != self.last:
            self.last = f"{status.status}{where}"
            self._write(self.last)
        for entry in status.logs[self.shown:]:
            step = STEP.search(entry.message)
            if step:
                self._step(int(step.group(1)), int(step.group(2)))
            else:
                self._write(f"  [{entry.level}] {entry.message}")
        self.shown = len(status.logs)

    def _step(self, done: int, total: int) -> None:
        if self.bar is None or self.bar.total != total:
            self.close()
            self.bar = tqdm(total=total, unit="step", desc="running", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def echo_status() -> Iterator[Callable[[Status], None]]:
    display = RunDisplay()
    try:
        yield display
    finally:
        display.close()
