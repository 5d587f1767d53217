"""`pip install darkroom` is the Python client alone: installed into a fresh virtualenv (its
dependencies from the package index), it talks to a live server, its CLI runs the client commands,
and it carries neither torch nor Redis nor Celery nor the API framework."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.support.harness import ROOT
from tests.support.images import gradient, png_data_uri

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

CLIENT_RUN = textwrap.dedent(
    """
    import importlib.util, json, sys
    from darkroom.client import Client
    server_parts = ("torch", "redis", "celery", "fastapi", "numpy", "PIL")
    present = [m for m in server_parts if importlib.util.find_spec(m)]
    with Client(sys.argv[1]) as dr:
        result = dr.subscribe("fal-ai/post-processing", {"image_url": sys.argv[2], "enable_solarize": True})
    print(json.dumps({"present": present, "images": len(result.images), "width": result.images[0].width}))
    """
)


def test_the_base_package_is_a_working_client(tmp_path, api_url, worker):
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ behind
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "data", "build", "*.egg-info", "__pycache__", ".gpu-*", "artifacts"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, darkroom = venv / "bin" / "python", venv / "bin" / "darkroom"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=540,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    ran = subprocess.run([str(python), "-c", CLIENT_RUN, api_url, png_data_uri(gradient(8, 8))],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout) == {"present": [], "images": 1, "width": 8}

    helped = subprocess.run([str(darkroom), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "submit" in helped.stdout, helped.stderr
    ops = subprocess.run([str(darkroom), "jobs", "list"], capture_output=True, text=True, timeout=60)
    assert ops.returncode != 0 and "darkroom[server]" in ops.stderr
