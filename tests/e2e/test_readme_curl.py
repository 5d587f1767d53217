"""The README's "Try it with curl" commands, run as written (only the API's address replaced) with
bash and curl against a live API and worker, on an image too large for a shell argument."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import httpx
import numpy as np
import pytest

from tests.support.harness import ROOT, wait_for
from tests.support.images import decode_png, png_bytes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (shutil.which("bash") and shutil.which("curl")), reason="needs bash and curl"),
]

README_API = "http://127.0.0.1:8000"


def curl_blocks() -> list[str]:
    """The bash blocks of the README's "Try it with curl" section."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Try it with curl")
    section = text[start:text.index("\n## ", start + 1)]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_readme_curl_commands_work_on_a_large_photo(client, api_url, tmp_path):
    blocks = curl_blocks()
    assert len(blocks) == 2 and README_API in blocks[0]
    rgb = np.random.default_rng(7).integers(0, 256, (520, 520, 3), dtype=np.uint8)
    (tmp_path / "photo.png").write_bytes(png_bytes(rgb))
    assert (tmp_path / "photo.png").stat().st_size > 800_000  # noise: PNG cannot compress it
    script = "\n".join(blocks).replace(README_API, api_url) + '\nprintf %s "$ID" > last-id\n'
    # python3 of this environment first on PATH (the README needs some python3, any version)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}

    run = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=90)

    assert run.returncode == 0, run.stderr
    assert "Argument list too long" not in run.stderr
    assert '"status":"COMPLETED"' in run.stdout  # the status stream ran to the end
    out = decode_png((tmp_path / "photo-out.png").read_bytes())
    assert out.shape == rgb.shape and not np.array_equal(out, rgb)  # grain and vignette applied
    # the data-URI variant submitted the same photo in one request
    data_uri_id = (tmp_path / "last-id").read_text()
    assert data_uri_id
    status_url = f"{api_url}/fal-ai/post-processing/requests/{data_uri_id}/status"
    wait_for(lambda: httpx.get(status_url).status_code == 200, timeout_s=60, interval_s=0.1)
    result = httpx.get(f"{api_url}/fal-ai/post-processing/requests/{data_uri_id}").json()
    assert result["images"][0]["width"] == 520


def test_a_failed_step_stops_the_next_one_visibly(api_url, tmp_path):
    """No photo.png: the upload fails, and the submit says so instead of posting an empty image_url."""
    script = "\n".join(curl_blocks()[:1]).replace(README_API, api_url)
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert run.returncode != 0
    assert "URL: the upload failed" in run.stderr
    assert "ID: the submit failed" in run.stderr
    assert not (tmp_path / "photo-out.png").exists()
