"""Storing encoded outputs: object storage under deterministic keys, or data URIs in sync mode."""

from __future__ import annotations

from darkroom.job import JobRecord
from storage.objects import output_key
from worker import imaging
from worker.context import WorkerContext


def store_image(
    ctx: WorkerContext, job: JobRecord, encoded: imaging.EncodedImage, index: int, sync_mode: bool
) -> dict:
    """The result entry of one output image. Objects are named ``<request_id>/<index>.<ext>`` (so a
    re-run writes the same key); the record keeps the key and URLs are signed when read."""
    file_name = f"{index}.{encoded.extension}"
    image = {
        "content_type": encoded.content_type,
        "file_name": file_name,
        "file_size": len(encoded.data),
        "width": encoded.width,
        "height": encoded.height,
    }
    if sync_mode:
        image["url"] = imaging.data_uri(encoded)
    else:
        key = output_key(job.id, file_name)
        ctx.objects.put(key, encoded.data, encoded.content_type)
        image["key"] = key
    return image
