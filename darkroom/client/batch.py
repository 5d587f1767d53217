"""Push many images through a Darkroom server: plan the work, run it with bounded concurrency, report.

Used by ``darkroom submit`` (``darkroom.cli.client_commands``). An item is one input (a local file or a URL)
and the file its first output image goes to; an item whose output already exists is skipped (unless
``overwrite``), so an interrupted batch resumes where it stopped. With a ``Manifest`` the outputs'
settings are recorded, and skipped outputs made with other settings are told apart (``Report.stale``).
Outputs are written to a temporary name and renamed, so a half-written file never counts as done.
One item failing never stops the others.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import mimetypes
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from darkroom.client import Client, DarkroomClientError, Result
from darkroom.client.formats import FORMAT_SUFFIXES, SUFFIX_FORMATS, ensure_format
from darkroom.client.manifest import Manifest, fingerprint

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
URL_SCHEMES = ("http://", "https://")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Item:
    source: str  # a local path or an http(s) URL
    output: Path  # where the first output image goes

    @property
    def is_url(self) -> bool:
        return self.source.startswith(URL_SCHEMES)


@dataclass
class Report:
    done: list[Item] = field(default_factory=list)
    skipped: list[Item] = field(default_factory=list)  # their output exists
    stale: list[Item] = field(default_factory=list)  # of the skipped: made with other settings
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, why)

    def summary(self) -> str:
        done, skipped, failed = len(self.done), len(self.skipped), len(self.failed)
        return f"{done} done, {skipped} skipped (output exists), {failed} failed"


def expand_inputs(args: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files, directories (their images, sorted), globs and URLs → sources; plus inputs that name nothing."""
    sources: list[str] = []
    problems: list[tuple[str, str]] = []
    for arg in args:
        path = Path(arg).expanduser()
        if arg.startswith(URL_SCHEMES) or path.is_file():
            sources.append(arg)
        else:
            found, why = _expand(arg, path)
            sources.extend(found)
            if not found:
                problems.append((arg, why))
    return list(dict.fromkeys(sources)), problems


def _expand(arg: str, path: Path) -> tuple[list[str], str]:
    """The files a directory or a glob stands for, and what to say when there are none."""
    if path.is_dir():
        images = [str(p) for p in sorted(path.iterdir()) if _is_image_file(p)]
        return images, "no image files in this directory"
    if _GLOB_CHARS.search(arg):
        matches = glob.glob(os.path.expanduser(arg), recursive=True)
        return sorted(p for p in matches if Path(p).is_file()), "no file matches this pattern"
    return [], "no such file or directory (and not an http(s) URL)"


def _is_image_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def plan(sources: list[str], outdir: Path, output_format: str = "png") -> list[Item]:
    """One item per source, named after it: ``OUTDIR/<stem>.<ext>``; stems shared by several sources
    get a short hash of the source, so names stay the same from one run to the next."""
    ext = FORMAT_SUFFIXES.get(str(output_format).lower(), ".png")
    stems = [_stem(s) for s in sources]
    counts = Counter(stems)
    items = []
    for source, stem in zip(sources, stems, strict=True):
        if counts[stem] > 1:
            stem = f"{stem}-{hashlib.sha1(source.encode()).hexdigest()[:8]}"
        items.append(Item(source, outdir / f"{stem}{ext}"))
    return items


def _stem(source: str) -> str:
    name = unquote(urlsplit(source).path) if source.startswith(URL_SCHEMES) else source
    stem = Path(name).stem if Path(name).name else ""
    return _UNSAFE.sub("_", stem).strip("._") or "image"


class Uploader:
    """Local files to ``image_url``: uploaded, or sent as data URIs when the server has no upload route."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.available = True

    def image_url(self, item: Item) -> str:
        if item.is_url:
            return item.source
        path = Path(item.source)
        if self.available:
            try:
                return self.client.upload(path)
            except DarkroomClientError as exc:
                if exc.status_code not in (404, 405):
                    raise
                self.available = False
        return data_uri(path)


def data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def save_result(client: Client, result: Result, output: Path) -> list[Path]:
    """Write every output image: the first to ``output``, the others to ``<stem>-<n><suffix>``, each
    in the format its extension names (converted if the server sent another)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    written = []
    fmt = SUFFIX_FORMATS.get(output.suffix.lower())
    for n, image in enumerate(result.images):
        target = output if n == 0 else output.with_name(f"{output.stem}-{n}{output.suffix}")
        data = fetch_bytes(client, image.url)
        write_atomically(target, ensure_format(data, fmt) if fmt else data)
        written.append(target)
    if not written:
        raise DarkroomClientError(200, "the result holds no image", "empty_result", result.request_id)
    return written


def fetch_bytes(client: Client, url: str) -> bytes:
    if url.startswith("data:"):  # sync_mode results
        return base64.b64decode(url.split(",", 1)[1])
    return client.download(url)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def process(
    client: Client, uploader: Uploader, app: str, arguments: dict[str, Any], item: Item,
    timeout_s: float | None = None, on_update: Callable | None = None,
) -> list[Path]:
    """One item: upload (if local), submit, follow, download, save."""
    body = {**arguments, "image_url": uploader.image_url(item)}
    result = client.subscribe(app, body, on_update=on_update, timeout_s=timeout_s)
    return save_result(client, result, item.output)


def describe(exc: BaseException) -> str:
    if isinstance(exc, DarkroomClientError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


def triage(
    items: list[Item], settings: str, manifest: Manifest | None = None, overwrite: bool = False
) -> tuple[Report, list[Item]]:
    """A report holding the items to skip (their output exists; ``stale`` when the manifest says
    other settings made it), and the items to process."""
    report, todo = Report(), []
    for item in items:
        if overwrite or not item.output.exists():
            todo.append(item)
            continue
        report.skipped.append(item)
        made_with = manifest.made_with(item.output) if manifest else None
        if made_with is not None and made_with != settings:
            report.stale.append(item)
    return report, todo


def run_batch(
    client: Client, app: str, arguments: dict[str, Any], items: list[Item], jobs: int = 4,
    timeout_s: float | None = None, progress: Callable[[Item, str | None], None] | None = None,
    overwrite: bool = False, manifest: Manifest | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Report:
    """Process ``items`` on ``jobs`` threads, skipping those whose output exists (unless ``overwrite``);
    ``on_start(n)`` once the n items to process are known, ``progress(item, error_or_None)`` after
    each; finished outputs are recorded in ``manifest``."""
    settings = fingerprint(app, arguments)
    report, todo = triage(items, settings, manifest, overwrite)
    if on_start:
        on_start(len(todo))
    uploader = Uploader(client)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {
            pool.submit(process, client, uploader, app, arguments, item, timeout_s): item for item in todo
        }
        try:
            for future in as_completed(futures):
                item, exc = futures[future], future.exception()
                if exc is None:
                    report.done.append(item)
                    if manifest:
                        manifest.record(item.output, item.source, app, settings)
                else:
                    report.failed.append((item.source, describe(exc)))
                if progress:
                    progress(item, describe(exc) if exc else None)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return report
