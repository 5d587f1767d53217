"""The official Python client (PyPI `fal-client`) against Darkroom over TLS, unmodified: only
FAL_QUEUE_RUN_HOST / FAL_RUN_HOST and a trusted test certificate (docs/contract.md §5, docs/decisions.md §13).

fal_client reads its hosts at import, so each client session runs in a subprocess.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from darkroom.cli.embedded import free_port
from darkroom.settings import Settings
from tests.support.harness import ROOT, make_settings, stop_process, wait_for
from tests.support.images import decode_png, gradient, png_data_uri
from tests.support.servers import running_api

pytest.importorskip("fal_client")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
APP = "fal-ai/post-processing"
LOOPBACK = ipaddress.ip_address("127.0.0.1")
KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=False, encipher_only=False, decipher_only=False,
)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own trust anchor), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOOPBACK)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8, plain = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, plain))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def tls_api(settings_db: str, s3_endpoint: str, tls: tuple[Path, Path]):
    cert, key = tls
    settings = make_settings(settings_db, s3_endpoint, free_port(), tls_certfile=cert, tls_keyfile=key)
    assert settings.api_base_url.startswith("https://127.0.0.1:")
    return running_api(settings, verify=str(cert), ssl_certfile=str(cert), ssl_keyfile=str(key))


@pytest.fixture(scope="module")
def live(redis_url, s3_endpoint, tls, worker) -> Iterator[str]:
    """An HTTPS API on the database the session worker consumes."""
    with tls_api(redis_url, s3_endpoint, tls) as url:
        yield url


@pytest.fixture(scope="module")
def idle(redis_url, s3_endpoint, tls) -> Iterator[str]:
    """An HTTPS API whose jobs no worker picks up (Redis db 9): requests stay queued."""
    with tls_api(redis_url.rsplit("/", 1)[0] + "/9", s3_endpoint, tls) as url:
        yield url


def run_client(base_url: str, cert: Path, script: str, argument: dict) -> dict:
    """Run ``script`` (which prints one JSON object) with fal_client pointed at ``base_url``."""
    host = base_url.removeprefix("https://")
    env = {**os.environ, "FAL_KEY": "anything", "FAL_QUEUE_RUN_HOST": host, "FAL_RUN_HOST": f"{host}/run",
           "SSL_CERT_FILE": str(cert)}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), json.dumps(argument)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


SESSION = """
    import json, sys, time
    import fal_client

    APP = "fal-ai/post-processing"
    image = json.loads(sys.argv[1])
    out = {}
    out["subscribe"] = fal_client.subscribe(
        APP, arguments={**image, "enable_desaturate": True, "desaturate_factor": 1.0}, with_logs=True
    )
    handle = fal_client.submit(APP, arguments={**image, "enable_solarize": True})
    status = handle.status(with_logs=True)
    while not isinstance(status, fal_client.Completed):
        time.sleep(0.05)
        status = handle.status(with_logs=True)
    out["request_id"] = handle.request_id
    out["logs"] = status.logs
    out["result"] = handle.get()
    out["status_by_id"] = type(fal_client.status(APP, handle.request_id)).__name__
    out["result_by_id"] = fal_client.result(APP, handle.request_id)
    try:
        handle.cancel()
        out["cancel_done"] = "accepted"
    except fal_client.FalClientHTTPError as exc:
        out["cancel_done"] = exc.status_code
    out["run"] = fal_client.run(APP, arguments={**image, "enable_blur": True, "blur_radius": 3}, path="")
    out["run_blur"] = fal_client.run(APP + "/blur", arguments={**image, "blur_radius": 3})
    print(json.dumps(out))
"""

CANCEL = """
    import json, sys
    import fal_client

    APP = "fal-ai/post-processing"
    handle = fal_client.submit(APP, arguments=json.loads(sys.argv[1]))
    out = {"queued": type(handle.status()).__name__, "position": handle.status().position}
    handle.cancel()
    status = handle.status(with_logs=True)
    out["after"] = type(status).__name__
    out["error_type"] = getattr(status, "error_type", None)
    try:
        handle.get()
    except fal_client.FalClientHTTPError as exc:
        out["result_status"] = exc.status_code
    print(json.dumps(out))
"""


def download(url: str) -> np.ndarray:
    resp = httpx.get(url, timeout=10)
    assert resp.status_code == 200
    return decode_png(resp.content)


def test_fal_client_subscribe_submit_status_result_cancel_and_run(live, tls):
    src = gradient(40, 30)
    out = run_client(live, tls[0], SESSION, {"image_url": png_data_uri(src)})

    grey = download(out["subscribe"]["images"][0]["url"])
    assert grey.shape == src.shape and np.abs(grey[..., 0].astype(int) - grey[..., 2]).max() <= 1
    assert np.abs(grey.astype(int) - src).max() > 10

    solarized = download(out["result"]["images"][0]["url"])
    assert np.abs(solarized.astype(int) - src).max() > 10
    assert out["result_by_id"]["images"][0]["file_size"] == out["result"]["images"][0]["file_size"]
    assert out["status_by_id"] == "Completed"
    assert out["logs"] and {"message", "level", "timestamp"} <= set(out["logs"][0])
    assert out["cancel_done"] == 400  # already completed

    for key in ("run", "run_blur"):
        blurred = download(out[key]["images"][0]["url"])
        assert blurred.shape == src.shape and np.abs(blurred.astype(int) - src).max() > 0
    assert out["run"]["images"][0]["url"] != out["run_blur"]["images"][0]["url"]


def test_fal_client_cancels_a_queued_request(idle, tls):
    out = run_client(idle, tls[0], CANCEL, {"image_url": png_data_uri(gradient(8, 8))})
    assert out["queued"] == "Queued" and isinstance(out["position"], int)
    assert out["after"] == "Completed" and out["error_type"] == "request_cancelled"
    assert out["result_status"] == 400


def test_darkroom_api_serves_https_when_both_tls_settings_are_set(redis_url, tls):
    cert, key = tls
    port = free_port()
    env = {**os.environ, "DARKROOM_REDIS_URL": redis_url, "DARKROOM_TLS_CERTFILE": str(cert),
           "DARKROOM_TLS_KEYFILE": str(key), "DARKROOM_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "darkroom.cli", "api"], env=env, cwd=ROOT)
    try:
        url = f"https://127.0.0.1:{port}"
        wait_for(lambda: _https_ok(url + "/health", cert), timeout_s=30)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        stop_process(proc)
    with pytest.raises(ValueError, match="tls_keyfile"):
        Settings(tls_certfile=cert)


def _https_ok(url: str, cert: Path) -> bool:
    try:
        return httpx.get(url, verify=str(cert), timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
