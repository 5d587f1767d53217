"""The @fal-ai/client proxy route (`proxyUrl` mode): x-fal-target-url mapped onto Darkroom's routes,
foreign targets refused, CORS from settings."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from api.proxy import PROXY_PATH, map_target
from darkroom.errors import ProxyTargetRefused
from storage.apikeys import ApiKeyStore
from tests.support.harness import make_settings, wait_for
from tests.support.images import gradient, png_data_uri

APP = "fal-ai/post-processing"
OWN = "https://darkroom.example:8443/base"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("https://queue.fal.run/fal-ai/post-processing", ("/fal-ai/post-processing", "")),
        ("https://queue.fal.run/fal-ai/post-processing/requests/abc/status?logs=1",
         ("/fal-ai/post-processing/requests/abc/status", "logs=1")),
        ("https://fal.run/fal-ai/post-processing/blur", ("/run/fal-ai/post-processing/blur", "")),
        ("https://darkroom.example:8443/base/fal-ai/post-processing/requests/abc",
         ("/fal-ai/post-processing/requests/abc", "")),
    ],
)
def test_fal_urls_map_onto_darkroom_routes(target, expected):
    assert map_target(target, OWN) == expected


@pytest.mark.parametrize(
    "target",
    [None, "", "https://evil.example.com/fal-ai/post-processing", "https://rest.alpha.fal.ai/storage/upload",
     "https://queue.fal.run.evil.example/x", "ftp://queue.fal.run/x", "https://darkroom.example:9999/base/x",
     "not a url"],
)
def test_other_targets_are_refused(target):
    with pytest.raises(ProxyTargetRefused):
        map_target(target, OWN)


def proxied(client: httpx.Client, method: str, target: str, **kwargs) -> httpx.Response:
    headers = {"x-fal-target-url": target, **kwargs.pop("headers", {})}
    return client.request(method, PROXY_PATH, headers=headers, **kwargs)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_js_client_session_through_the_proxy(client, api_url):
    body = {"image_url": png_data_uri(gradient()), "enable_solarize": True}
    sub = proxied(client, "POST", f"https://queue.fal.run/{APP}", json=body)
    assert sub.status_code == 200, sub.text
    rid = sub.json()["request_id"]
    assert sub.json()["status_url"] == f"{api_url}/{APP}/requests/{rid}/status"
    assert sub.headers["x-fal-request-id"] == rid

    status_target = f"https://queue.fal.run/{APP}/requests/{rid}/status?logs=1"
    done = wait_for(lambda: (r := proxied(client, "GET", status_target)).status_code == 200 and r.json())
    assert done["status"] == "COMPLETED" and isinstance(done["logs"], list) and done["logs"]
    result = proxied(client, "GET", f"https://queue.fal.run/{APP}/requests/{rid}")
    assert result.status_code == 200 and httpx.get(result.json()["images"][0]["url"]).status_code == 200
    own_url = proxied(client, "GET", sub.json()["status_url"])
    assert own_url.status_code == 200 and own_url.json()["request_id"] == rid

    stream = proxied(client, "GET", f"https://queue.fal.run/{APP}/requests/{rid}/status/stream?logs=0")
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in stream.text.splitlines() if line.startswith("data: ")]
    assert [e["status"] for e in events] == ["COMPLETED"]

    run = proxied(client, "POST", f"https://fal.run/{APP}", json=body, timeout=30)
    assert run.status_code == 200 and run.json()["images"][0]["url"]
    cancel = proxied(client, "PUT", f"https://queue.fal.run/{APP}/requests/{rid}/cancel")
    assert cancel.status_code == 400 and cancel.json() == {"status": "ALREADY_COMPLETED"}


@pytest.mark.e2e
def test_foreign_targets_get_a_400(client):
    for headers in ({"x-fal-target-url": "https://example.com/fal-ai/post-processing"}, {}):
        resp = client.post(PROXY_PATH, headers=headers, json={})
        assert resp.status_code == 400 and resp.json()["error_type"] == "proxy_target_refused"


@pytest.fixture(scope="module")
def guarded(redis_url, s3_endpoint):
    """An API that requires keys and allows one browser origin."""
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/8", s3_endpoint, 8996, auth_mode="required",
                             cors_origins="https://app.example")
    with TestClient(create_app(settings)) as api:
        _, key = ApiKeyStore(api.app.state.services.store.r).create("proxy-test")
        yield api, key


def test_authorization_is_forwarded(guarded):
    api, key = guarded
    target = {"x-fal-target-url": f"https://queue.fal.run/{APP}"}
    body = {"image_url": png_data_uri(gradient(4, 4))}
    assert api.post(PROXY_PATH, headers=target, json=body).status_code == 401
    ok = api.post(PROXY_PATH, headers={**target, "Authorization": f"Key {key}"}, json=body)
    assert ok.status_code == 200 and ok.json()["status"] == "IN_QUEUE"


def test_cors_follows_the_setting(guarded):
    api, key = guarded
    preflight = api.options(PROXY_PATH, headers={
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-fal-target-url",
    })
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-fal-target-url" in preflight.headers["access-control-allow-headers"].lower()
    headers = {"Origin": "https://app.example", "Authorization": f"Key {key}",
               "x-fal-target-url": f"https://queue.fal.run/{APP}"}
    resp = api.post(PROXY_PATH, headers=headers, json={"image_url": png_data_uri(gradient(4, 4))})
    assert resp.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-fal-request-id" in resp.headers["access-control-expose-headers"]
    foreign = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    other = api.options(PROXY_PATH, headers=foreign)
    assert "access-control-allow-origin" not in other.headers
