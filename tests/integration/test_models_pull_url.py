"""`darkroom models pull` for a model published as one file (the ONNX matte): downloaded from its URL
over real HTTP, kept only when its md5 matches."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from darkroom.cli import main
from tests.support.fileserver import FileServer

BODY = b"not really onnx, but bytes with a known digest" * 100


@pytest.fixture
def published():
    srv = FileServer()
    yield srv, srv.url(srv.add("model.onnx", BODY, "application/octet-stream"))
    srv.close()


def pull(tmp_path, url: str, md5: str):
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"tiny-matte": {"pipeline": "onnx-segmentation", "url": url, "md5": md5}}))
    env = {"DARKROOM_MODELS_CONFIG": str(config), "DARKROOM_MODELS_DIR": str(tmp_path / "models")}
    return CliRunner().invoke(main, ["models", "pull", "tiny-matte"], env=env)


def test_pull_downloads_the_file_as_the_marker(tmp_path, published):
    _, url = published
    result = pull(tmp_path, url, hashlib.md5(BODY).hexdigest())
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "tiny-matte" / "model.onnx").read_bytes() == BODY
    assert "tiny-matte is ready" in result.output


def test_a_wrong_md5_keeps_nothing(tmp_path, published):
    _, url = published
    result = pull(tmp_path, url, "0" * 32)
    assert result.exit_code == 1 and "expected 000" in result.output
    assert not any((tmp_path / "models" / "tiny-matte").iterdir())


def test_an_unreachable_url_says_how_to_place_the_file(tmp_path, published):
    srv, url = published
    result = pull(tmp_path, url.replace("model.onnx", "missing.onnx"), "0" * 32)
    assert result.exit_code == 1 and "copy it to" in result.output and "model.onnx" in result.output
