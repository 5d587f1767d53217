"""API keys (docs/decisions.md §17): the CLI, the three header forms, 401s, per-key privacy, rate limits and
the start-up rules. APIs here run on Redis databases no worker consumes."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from api.auth import AuthConfigError, keys_required
from darkroom.cli import main
from darkroom.settings import Settings
from storage.apikeys import ApiKeyStore, digest, key_id_of
from storage.jobs import redis_client
from tests.support.fal_queue import APP, image_body, submit
from tests.support.harness import make_settings
from tests.support.images import gradient, png_data_uri

DB = "/10"


def cli(redis_url: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["keys", *args], env={"DARKROOM_REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def auth_redis(redis_url) -> str:
    return redis_url.rsplit("/", 1)[0] + DB


@pytest.fixture(scope="module")
def api(auth_redis, s3_endpoint) -> Iterator[TestClient]:
    from api.app import create_app

    settings = make_settings(auth_redis, s3_endpoint, 8998, auth_mode="required")
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def alice(auth_redis) -> str:
    return cli(auth_redis, "create", "--name", "alice").strip()


@pytest.fixture(scope="module")
def bob(auth_redis) -> str:
    return cli(auth_redis, "create", "--name", "bob").strip()


def key_header(key: str) -> dict[str, str]:
    return {"Authorization": f"Key {key}"}


def test_cli_creates_lists_and_revokes_keys(auth_redis):
    key = cli(auth_redis, "create", "--name", "ci runner").strip()
    key_id = key_id_of(key)
    assert key_id and key.startswith(f"{key_id}:") and len(key) > 50
    store = ApiKeyStore(redis_client(auth_redis, 1.0))
    raw = store.r.hgetall(f"darkroom:apikey:{key_id}")
    assert raw[b"hash"].decode() == digest(key)
    assert key.split(":", 1)[1].encode() not in b"".join(raw.values())  # only the hash is kept
    listing = cli(auth_redis, "list")
    line = next(x for x in listing.splitlines() if key_id in x)
    assert "active" in line and "ci runner" in line and key.split(":", 1)[1] not in listing
    assert cli(auth_redis, "revoke", key_id).strip() == f"revoked {key_id}"
    assert "revoked" in next(x for x in cli(auth_redis, "list").splitlines() if key_id in x)
    missing = CliRunner().invoke(main, ["keys", "revoke", "dk_0000000000000000"],
                                 env={"DARKROOM_REDIS_URL": auth_redis})
    assert missing.exit_code != 0 and "no API key" in missing.output


def test_missing_wrong_and_revoked_keys_are_401(api, alice, auth_redis):
    revoked = cli(auth_redis, "create", "--name", "soon gone").strip()
    cli(auth_redis, "revoke", key_id_of(revoked))
    wrong_secret = alice.split(":", 1)[0] + ":" + "A" * 43
    body = {"image_url": png_data_uri(gradient(8, 8))}
    for headers, why in [
        ({}, "an API key is required"),
        (key_header(wrong_secret), "unknown API key"),
        (key_header("not-a-key"), "malformed API key"),
        ({"Authorization": f"Basic {alice}"}, "malformed API key"),
        (key_header(revoked), "revoked"),
    ]:
        resp = api.post(f"/{APP}", json=body, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.json()["error_type"] == "unauthorized" and why in resp.json()["detail"]
        assert resp.headers["www-authenticate"].startswith("Key")
    assert api.get(f"/{APP}/requests/00000000-0000-0000-0000-000000000000/status").status_code == 401
    assert api.post("/storage/upload", content=b"x").status_code == 401
    each = api.get("/v1/prediction/abc", headers={"X-API-Key": wrong_secret})
    assert each.status_code == 401 and "unknown API key" in each.json()["error"]  # eachlabs' shape


def test_every_header_form_is_accepted(api, alice):
    for headers in (
        {"Authorization": f"Key {alice}"},
        {"Authorization": f"Bearer {alice}"},
        {"authorization": f"key   {alice}  "},
        {"X-API-Key": alice},
    ):
        resp = api.post(f"/{APP}", json={"image_url": png_data_uri(gradient(4, 4))}, headers=headers)
        assert resp.status_code == 200, (headers, resp.text)


def test_requests_are_visible_only_to_their_key(api, alice, bob):
    sub = submit(api, image_body(), headers=key_header(alice))
    rid = sub["request_id"]
    assert api.get(sub["status_url"], headers=key_header(alice)).status_code == 202
    for method, url in [("GET", sub["status_url"]), ("GET", sub["response_url"]),
                        ("GET", sub["status_url"] + "/stream"), ("DELETE", sub["response_url"])]:
        resp = api.request(method, url, headers=key_header(bob))
        assert resp.status_code == 404, (method, url, resp.text)
    assert api.put(sub["cancel_url"], headers=key_header(bob)).json() == {"status": "NOT_FOUND"}
    each = api.get(f"/v1/prediction/{rid}", headers={"X-API-Key": bob})
    assert each.status_code == 404
    assert api.get(f"/v1/prediction/{rid}", headers={"X-API-Key": alice}).status_code == 200
    job = api.app.state.services.store.get(rid)
    assert job.owner == key_id_of(alice)
    assert api.put(sub["cancel_url"], headers=key_header(alice)).status_code == 202


def test_open_routes_need_no_key(api):
    assert api.get("/health").status_code == 200
    assert api.get("/ready").status_code in (200, 503)
    assert api.get("/openapi.json").status_code == 200


def test_rate_limit_answers_429_with_retry_after(auth_redis, s3_endpoint):
    from api.app import create_app

    key = cli(auth_redis, "create", "--name", "busy").strip()
    settings = make_settings(auth_redis, s3_endpoint, 8997, auth_mode="required",
                             rate_limit_rps=0.5, rate_limit_burst=3)
    url = f"/{APP}/requests/00000000-0000-0000-0000-000000000000/status"
    with TestClient(create_app(settings)) as client:
        codes = [client.get(url, headers=key_header(key)).status_code for _ in range(3)]
        assert codes == [404, 404, 404]  # the burst
        limited = client.get(url, headers=key_header(key))
        assert limited.status_code == 429 and limited.json()["error_type"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        other = cli(auth_redis, "create").strip()  # buckets are per key
        assert client.get(url, headers=key_header(other)).status_code == 404


@pytest.mark.parametrize(("host", "mode", "override", "required"), [
    ("127.0.0.1", "auto", False, False),
    ("::1", "auto", False, False),
    ("localhost", "auto", False, False),
    ("0.0.0.0", "auto", False, True),
    ("10.1.2.3", "auto", False, True),
    ("127.0.0.1", "required", False, True),
    ("127.0.0.1", "off", False, False),
    ("0.0.0.0", "off", True, False),
])
def test_when_keys_are_required(host, mode, override, required):
    settings = Settings(host=host, auth_mode=mode, auth_off_public_ok=override)
    assert keys_required(settings) is required


def test_auth_off_on_a_public_bind_refuses_to_start():
    with pytest.raises(AuthConfigError, match="not a loopback address"):
        keys_required(Settings(host="0.0.0.0", auth_mode="off"))
    result = CliRunner().invoke(main, ["api", "--host", "0.0.0.0"],
                                env={"DARKROOM_AUTH_MODE": "off", "DARKROOM_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code != 0 and "DARKROOM_AUTH_OFF_PUBLIC_OK" in result.output


def test_loopback_default_says_keys_are_off_and_still_scopes_keyed_jobs(auth_redis, s3_endpoint, alice,
                                                                         caplog):
    from api.app import create_app

    settings = make_settings(auth_redis, s3_endpoint, 8996)  # host 127.0.0.1, auth_mode auto
    with caplog.at_level(logging.WARNING, logger="api.auth"), TestClient(create_app(settings)) as client:
        assert "authentication is OFF" in caplog.text
        anonymous = client.post(f"/{APP}", json={"image_url": png_data_uri(gradient(4, 4))})
        assert anonymous.status_code == 200
        ignored = client.post(f"/{APP}", json={"image_url": png_data_uri(gradient(4, 4))},
                              headers=key_header("dk_0123456789abcdef:whatever-fal-key-a-client-had"))
        assert ignored.status_code == 200  # unknown keys are ignored when keys are optional
        assert client.get(anonymous.json()["status_url"]).status_code == 202
        keyed = submit(client, image_body(), headers=key_header(alice))
        assert client.get(keyed["status_url"]).status_code == 404  # a keyed job stays its key's
        assert client.get(keyed["status_url"], headers=key_header(alice)).status_code == 202
