"""fal's queue protocol from the caller's side, for tests: submit, poll the status, read the result.

Every helper takes ``client``: an ``httpx.Client`` or a FastAPI ``TestClient`` (a subclass of it) whose
base URL is the API, or a base URL string for one-off ``httpx`` calls. Paths are relative to that base;
the URLs a submit answers with (``status_url``, ``response_url``) are absolute and used as they are.
A ``sub`` is a submit's answer; where only the status is needed, its ``status_url`` will do.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image

from tests.support.harness import wait_for
from tests.support.images import decode_png, gradient, png_data_uri

APP = "fal-ai/post-processing"
REQUEST_ID_HEADER = "x-fal-request-id"

Client = httpx.Client | str
Sub = dict | str


def image_body(width: int = 8, height: int = 8, **fields) -> dict:
    """A request body with a small gradient as ``image_url``, plus ``fields``."""
    return {"image_url": png_data_uri(gradient(width, height)), **fields}


def submit(client: Client, body: dict, app: str = APP, *, params: dict | None = None,
           headers: dict | None = None) -> dict:
    """POST ``body`` to ``/{app}``: a 200 whose ``x-fal-request-id`` header names the request."""
    resp = _send(client, "POST", f"/{app}", json=body, params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert resp.headers[REQUEST_ID_HEADER] == data["request_id"]
    return data


def status(client: Client, sub: Sub, *, logs: bool = True) -> dict:
    """One read of the status (200 when COMPLETED, 202 before), with its logs unless ``logs=False``."""
    return _status(client, sub, logs).json()


def wait_done(client: Client, sub: Sub, *, timeout_s: float = 60, interval_s: float = 0.02) -> dict:
    """Poll the status (with logs) until the request is COMPLETED, failed ones included; its body."""
    def poll() -> dict | None:
        resp = _status(client, sub, logs=True)
        return resp.json() if resp.status_code == 200 else None

    done = wait_for(poll, timeout_s=timeout_s, interval_s=interval_s)
    assert done["status"] == "COMPLETED", done
    return done


def result(client: Client, sub: dict, *, timeout_s: float = 60) -> dict:
    """Wait for the request, check that it succeeded and return its output (as fal_client.result)."""
    _, output = _finish(client, sub, timeout_s)
    return output


def run(client: Client, body: dict, app: str = APP, *, timeout_s: float = 60) -> tuple[dict, dict]:
    """Submit, wait and read a request that must succeed: ``(final status, output)``."""
    return _finish(client, submit(client, body, app), timeout_s)


def run_image(
    client: Client, body: dict, app: str = APP, *, timeout_s: float = 60
) -> tuple[dict, Image.Image]:
    """``run``, then the first output image fetched and opened with Pillow (any format, alpha kept):
    ``(output, image)``."""
    _, output = run(client, body, app, timeout_s=timeout_s)
    return output, Image.open(io.BytesIO(download(output["images"][0])))


def download(image: dict) -> bytes:
    """The bytes of an output image (an entry of ``images``), fetched from its URL."""
    resp = httpx.get(image["url"], timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.content


def download_png(image: dict) -> np.ndarray:
    """An output image, fetched and decoded to RGB."""
    return decode_png(download(image))


def first_image(output: dict) -> np.ndarray:
    """An output's first image, downloaded and decoded to RGB."""
    return download_png(output["images"][0])


def log_messages(state: dict) -> list[str]:
    """The messages of a status body's logs (none when it was read without logs)."""
    return [entry["message"] for entry in state["logs"] or []]


def _finish(client: Client, sub: dict, timeout_s: float) -> tuple[dict, dict]:
    done = wait_done(client, sub, timeout_s=timeout_s)
    assert "error" not in done, done
    resp = _send(client, "GET", sub["response_url"])
    assert resp.status_code == 200, resp.text
    return done, resp.json()


def _status(client: Client, sub: Sub, logs: bool) -> httpx.Response:
    url = sub if isinstance(sub, str) else sub["status_url"]
    resp = _send(client, "GET", url, params={"logs": "1"} if logs else None)
    assert resp.status_code in (200, 202), resp.text
    return resp


def _send(client: Client, method: str, url: str, **kwargs) -> httpx.Response:
    if not isinstance(client, str):
        return client.request(method, url, **kwargs)
    if not url.startswith(("http://", "https://")):
        url = client.rstrip("/") + url
    return httpx.request(method, url, timeout=10, **kwargs)
