"""composite and overlay through the real stack: submit -> worker (batched steps) -> S3."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.fal_queue import run_image
from tests.support.images import gradient, png_data_uri

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
APP = "darkroom/pipeline"


def run(client: httpx.Client, body: dict) -> tuple[dict, Image.Image]:
    return run_image(client, body, APP)


def _cut_out(size: int = 40) -> np.ndarray:
    """A red disc on transparency."""
    ys, xs = np.mgrid[0:size, 0:size]
    disc = (xs - size / 2 + 0.5) ** 2 + (ys - size / 2 + 0.5) ** 2 < (size / 2 - 2) ** 2
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[disc] = (255, 0, 0, 255)
    return rgba


def test_composite_onto_a_reference_image_then_text(client):
    background = np.zeros((120, 160, 3), np.uint8)
    background[..., 1] = 180  # green
    body = {
        "images": {"photo": png_data_uri(_cut_out()), "paper": png_data_uri(background)},
        "steps": [
            {"op": "composite", "image": "paper", "scale": 0.5,
             "shadow": {"offset_x": 8, "offset_y": 8, "blur": 3, "opacity": 0.8}},
            {"op": "overlay", "text": "darkroom", "size": 14, "gravity": "bottom_left", "margin": 4,
             "color": "white", "stroke_width": 1, "stroke_color": "black"},
        ],
    }
    result, image = run(client, body)
    assert image.size == (160, 120)
    assert [s["op"] for s in result["metrics"]["steps"]] == ["composite", "overlay"]
    px = np.asarray(image.convert("RGB")).astype(int)
    assert tuple(px[5, 5]) == (0, 180, 0)  # the reference background
    assert tuple(px[60, 80]) == (255, 0, 0)  # the disc, fitted (x3) times 0.5, centred
    assert px[85, 95, 1] < 60 and px[85, 95, 0] < 20  # the shadow, down and to the right of the disc
    assert tuple(px[30, 50]) == (0, 180, 0)  # none up and to the left
    corner = px[100:116, 4:80]  # the text: white and black pixels in the bottom-left corner
    assert (corner.min(axis=2) > 200).any() and (corner.max(axis=2) < 60).any()
    assert tuple(px[5, 150]) == (0, 180, 0)


def test_gradient_canvas_with_tiled_text_keeps_alpha(client):
    body = {
        "image_url": png_data_uri(gradient(60, 40)),
        "steps": [
            {"op": "composite", "gradient": {"start": "#0000ff00", "end": "#0000ffff", "angle": 0},
             "width": 120, "height": 80, "scale": 0.5, "gravity": "top_left"},
            {"op": "overlay", "text": "x", "size": 10, "tiled": True, "margin": 6, "opacity": 0.5},
        ],
    }
    _, image = run(client, body)
    assert image.mode == "RGBA" and image.size == (120, 80)
    alpha = np.asarray(image)[..., 3].astype(int)
    assert alpha[70, 0] < 10 and alpha[70, 119] > 245  # the gradient fades in from the left
    assert alpha[5, 5] == 255  # the opaque image at the top left
