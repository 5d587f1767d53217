"""The playground's code snippets (api/static/snippets.js), rendered by Node for a plain-HTTP server
such as `darkroom up`: the fal-client snippet says it needs TLS and what to use instead, and the
JavaScript snippet gives `proxyUrl` the form that also applies outside browsers."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.support.harness import ROOT

NODE = shutil.which("node")
RENDER = """
import { SNIPPETS } from %s;
const ctx = JSON.parse(process.argv[1]);
console.log(JSON.stringify(Object.fromEntries(SNIPPETS.map((s) => [s.id, s.render(ctx)]))));
"""


def render(server: str) -> dict[str, str]:
    if NODE is None:
        pytest.skip("node is not installed")
    module = json.dumps((ROOT / "api" / "static" / "snippets.js").as_uri())
    ctx = {"server": server, "app": "fal-ai/post-processing", "withKey": False,
           "body": {"image_url": "https://images.example.com/a.png", "enable_grain": True}}
    ran = subprocess.run([NODE, "--input-type=module", "-e", RENDER % module, json.dumps(ctx)],
                         capture_output=True, text=True, timeout=30, check=True)
    return json.loads(ran.stdout)


def test_the_fal_client_snippet_says_how_to_run_it_over_plain_http():
    snippet = render("http://127.0.0.1:8000")["python-fal"]
    note = snippet.split("import os")[0]
    assert "hangs" in note and "https://" in note
    assert "DARKROOM_TLS_CERTFILE" in note and "reverse proxy" in note
    assert '"Python (darkroom)"' in note and '"curl"' in note
    assert 'os.environ["FAL_QUEUE_RUN_HOST"] = "127.0.0.1:8000"' in snippet


def test_the_fal_client_snippet_has_no_note_over_https():
    snippet = render("https://darkroom.example.com")["python-fal"]
    assert snippet.startswith("import os")
    assert '"darkroom.example.com"' in snippet


def test_the_javascript_snippet_proxies_in_every_runtime():
    snippet = render("http://127.0.0.1:8000")["js"]
    assert 'proxyUrl: { url: "http://127.0.0.1:8000/api/fal/proxy", when: "always" }' in snippet
