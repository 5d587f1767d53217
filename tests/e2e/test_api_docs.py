"""/docs (Swagger UI) and /redoc work offline: their pages name only this server's URLs, which answer
with the scripts and styles; in a real Chromium that may reach nothing but this machine, Swagger UI
renders Darkroom's operations."""

from __future__ import annotations

import os
import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.e2e.test_playground import CHROMEDRIVER, CHROMIUM, FLAGS, browser_missing
from tests.support.harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def referenced_urls(html: str) -> list[str]:
    """Every URL a page loads or links to: src= and href= attributes, and the quoted URLs of its
    inline script (Swagger UI's ``url: '/openapi.json'``, ReDoc's spec-url)."""
    attributes = re.findall(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", html)
    in_script = re.findall(r"""(?:url)\s*:\s*["']([^"']+)["']""", html)
    return attributes + in_script


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_same_origin_assets(api_url, page):
    resp = httpx.get(api_url + page, timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    urls = referenced_urls(resp.text)
    assert urls, resp.text
    assert "openapi.json" in " ".join(urls)
    for url in urls:
        absolute = urljoin(api_url + page, url)
        assert urlsplit(absolute).netloc == urlsplit(api_url).netloc, f"{page} loads {url} from elsewhere"
        got = httpx.get(absolute, timeout=10)
        assert got.status_code == 200, (url, got.status_code)
        suffix = os.path.splitext(urlsplit(absolute).path)[1]
        if suffix in ASSET_TYPES:
            assert ASSET_TYPES[suffix] in got.headers["content-type"], (url, got.headers["content-type"])
            assert len(got.content) > 1000, url
    assert "fonts.googleapis.com" not in resp.text and "cdn.jsdelivr.net" not in resp.text


def test_swagger_ui_renders_the_operations_offline(api_url, tmp_path):
    why = browser_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {why}")
        pytest.skip(f"no headless browser: {why}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    # any host but this machine's loopback resolves to nothing: a CDN asset could not load
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(api_url + "/docs")
        blocks = lambda: driver.find_elements("css selector", ".opblock")  # noqa: E731
        wait_for(blocks, timeout_s=30, interval_s=0.2)
        paths = " ".join(b.text for b in blocks())
        assert "/fal-ai/post-processing" in paths and "/v1/prediction" in paths
    finally:
        driver.quit()
