"""Non-finite numbers (NaN, Infinity, 1e999) and other input JSON cannot carry: every route answers
a 4xx naming the field, in valid JSON, never a 500 from echoing the value back."""

from __future__ import annotations

import json

import httpx
import pytest

from api.proxy import PROXY_PATH

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

APP = "fal-ai/post-processing"
IMAGE = '"image_url": "https://example.com/a.png"'
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
JSON = {"Content-Type": "application/json"}
# (field, body): an int field, float fields with bounds, a float field of a single-effect app
FIELDS = [("blur_radius", APP), ("blur_sigma", APP), ("gamma", APP), ("seed", APP),
          ("glow_intensity", APP), ("solarize_threshold", f"{APP}/solarize")]


def post_raw(url: str, text: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(url, content=text.encode(), headers={**JSON, **(headers or {})}, timeout=10)


def strict_json(resp: httpx.Response):
    """The body, parsed as strict JSON (no NaN/Infinity literals) from valid UTF-8."""
    def refuse(word: str):
        raise AssertionError(f"{word} in the response body: {resp.text[:200]}")

    return json.loads(resp.content.decode("utf-8"), parse_constant=refuse)


def assert_names_field(resp: httpx.Response, field: str) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.headers["x-fal-error-type"] == "invalid_input"
    detail = strict_json(resp)["detail"]
    error = next(e for e in detail if e["loc"] == ["body", field])
    assert "finite" in error["msg"], error


def fal_urls(api_url: str, app: str) -> dict[str, tuple[str, dict]]:
    """The routes that take an app's body: queue submit, sync run, and both through the proxy."""
    proxy = f"{api_url}{PROXY_PATH}"
    return {
        "queue": (f"{api_url}/{app}", {}),
        "run": (f"{api_url}/run/{app}", {}),
        "proxy-queue": (proxy, {"x-fal-target-url": f"https://queue.fal.run/{app}"}),
        "proxy-run": (proxy, {"x-fal-target-url": f"https://fal.run/{app}"}),
    }


@pytest.mark.parametrize("route", ["queue", "run", "proxy-queue", "proxy-run"])
@pytest.mark.parametrize("number", NON_FINITE)
def test_fal_routes_answer_422_naming_the_field(api_url, route, number):
    for field, app in FIELDS:
        url, headers = fal_urls(api_url, app)[route]
        resp = post_raw(url, f'{{{IMAGE}, "{field}": {number}}}', headers)
        assert_names_field(resp, field)


@pytest.mark.parametrize("route", ["queue", "run", "proxy-queue"])
def test_echoed_input_is_valid_json(api_url, route):
    """A missing field echoes the whole body, non-finite numbers nested deep in it included."""
    url, headers = fal_urls(api_url, APP)[route]
    resp = post_raw(url, '{"blur_sigma": 1, "extra": {"deep": [NaN, Infinity, -Infinity, 1e999]}}', headers)
    assert resp.status_code == 422, resp.text
    (error,) = strict_json(resp)["detail"]
    assert error["loc"] == ["body", "image_url"] and error["type"] == "missing"
    assert error["input"]["extra"]["deep"] == ["NaN", "Infinity", "-Infinity", "Infinity"]


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"image_url": NaN}'])
def test_non_finite_where_an_object_or_string_belongs(api_url, text):
    resp = post_raw(f"{api_url}/{APP}", text)
    assert resp.status_code == 422, resp.text
    assert strict_json(resp)["detail"][0]["loc"][0] == "body"


def test_unencodable_strings_are_escaped_in_the_echo(api_url):
    """A lone surrogate (valid in a JSON escape, not in UTF-8) is echoed escaped, not a 500."""
    resp = post_raw(f"{api_url}/{APP}", r'{"image_url": "\ud800"}')
    assert resp.status_code == 422, resp.text
    (error,) = strict_json(resp)["detail"]
    assert error["loc"] == ["body", "image_url"] and error["input"] == "\\ud800"


def test_non_json_bytes_are_not_echoed_raw(api_url):
    resp = httpx.post(f"{api_url}/{APP}", content=b"\xff\xfe{", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 422, resp.text
    assert strict_json(resp)["detail"][0]["loc"] == ["body"]


@pytest.mark.parametrize("path", ["/v1/prediction", "/v1/prediction/run"])
@pytest.mark.parametrize("number", NON_FINITE)
def test_eachlabs_routes_answer_400_naming_the_field(api_url, path, number):
    for field, app in FIELDS:
        model = "post-processing-solarize" if app.endswith("solarize") else "post-processing"
        text = f'{{"model": "{model}", "input": {{{IMAGE}, "{field}": {number}}}}}'
        resp = post_raw(api_url + path, text)
        assert resp.status_code == 400, resp.text
        error = strict_json(resp)["error"]
        assert error.startswith(f"Invalid input for model: {field}: ") and "finite" in error, error


def test_eachlabs_top_level_non_finite(api_url):
    resp = post_raw(f"{api_url}/v1/prediction", '{"model": NaN, "input": {}}')
    assert resp.status_code == 400, resp.text
    assert strict_json(resp)["error"].startswith("Invalid input for model: model: ")
