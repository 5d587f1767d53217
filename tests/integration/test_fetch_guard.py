"""Guarded fetching end to end, against real servers on loopback only (``loopback_only`` fails a test
that tries any other address or asks DNS about any other name).

Without an allow-list every loopback form is refused before a connection is made; with ``localhost``
allowed, redirects to other loopback addresses are refused at the hop, and names resolved by a stub
resolver are connected to at the checked address (pinning), with Host and TLS SNI kept.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time

import pytest

from darkroom.errors import FetchFailed, FetchRefused, FetchUnavailable, ImageTooLarge
from darkroom.netguard import UrlPolicy
from darkroom.outbound import fetch_bytes, guarded_client
from darkroom.settings import Settings
from tests.support.fileserver import FileServer
from tests.support.images import gradient, png_bytes
from worker.fetch import fetch_input

pytestmark = [pytest.mark.usefixtures("loopback_only"), pytest.mark.timeout(60)]
PNG = png_bytes(gradient(8, 8))


def settings_allowing(*hosts: str, **overrides) -> Settings:
    values = dict(fetch_allow_hosts=list(hosts), fetch_connect_timeout_s=1.0, fetch_timeout_s=2.0)
    return Settings(**{**values, **overrides})


@pytest.fixture(scope="module")
def server():
    srv = FileServer()
    srv.add("a.png", PNG)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def other():
    srv = FileServer()
    srv.add("b.png", PNG)
    yield srv
    srv.close()


def refused_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/file/a.png",
        f"http://[::1]:{port}/file/a.png",
        f"http://localhost:{port}/file/a.png",
        f"http://LOCALHOST.:{port}/file/a.png",
        f"http://127.1:{port}/file/a.png",
        f"http://2130706433:{port}/file/a.png",
        f"http://0x7f000001:{port}/file/a.png",
        f"http://[::ffff:127.0.0.1]:{port}/file/a.png",
        f"http://0.0.0.0:{port}/file/a.png",
        f"http://example.com@127.0.0.1:{port}/file/a.png",
        f"http://user:pass@localhost:{port}/file/a.png",
        f"ftp://127.0.0.1:{port}/file/a.png",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/_GET",
    ]


def test_every_loopback_form_is_refused_without_connecting(server):
    before = len(server.hits)
    settings = settings_allowing()
    for url in refused_urls(server.port):
        with pytest.raises(FetchRefused) as err:
            fetch_input(url, None, settings)  # type: ignore[arg-type]  (no object store needed)
        assert err.value.detail.startswith("image_url: "), url
    assert len(server.hits) == before


def test_an_allowed_host_is_fetched_with_its_own_host_header(server):
    got = fetch_bytes(server.url("/file/a.png", "localhost"), settings_allowing("localhost"))
    assert got == PNG
    assert server.hits[-1].host == f"localhost:{server.port}"


def test_redirects_are_checked_at_every_hop(server, other):
    settings = settings_allowing("localhost")
    for target in (other.url("/file/b.png"), other.url("/file/b.png", "[::1]"), "http://10.0.0.1/x.png"):
        with pytest.raises(FetchRefused, match="loopback|private"):
            fetch_bytes(server.url(f"/redirect?to={target}", "localhost"), settings)
    assert other.hits == []
    relative = server.url("/redirect?to=/file/a.png", "localhost")
    assert fetch_bytes(relative, settings) == PNG
    with pytest.raises(FetchRefused, match="only http and https"):
        fetch_bytes(server.url("/redirect?to=file:///etc/passwd", "localhost"), settings)


def test_at_most_five_redirects(server):
    before = len(server.hits)
    with pytest.raises(FetchFailed, match="more than 5 redirects"):
        fetch_bytes(server.url("/loop", "localhost"), settings_allowing("localhost"))
    assert len(server.hits) - before == 6


def test_size_cap_is_applied_while_streaming(server):
    settings = settings_allowing("localhost", max_input_bytes=50_000)
    started = time.monotonic()
    with pytest.raises(ImageTooLarge, match="50000-byte limit"):
        fetch_bytes(server.url("/big?n=100000000", "localhost"), settings)
    assert time.monotonic() - started < 2
    server.add("large.png", b"x" * 60_000)
    with pytest.raises(ImageTooLarge, match="60000 bytes"):  # declared length: refused before reading
        fetch_bytes(server.url("/file/large.png", "localhost"), settings)


def test_total_time_limit(server):
    started = time.monotonic()
    with pytest.raises(FetchUnavailable, match="time limit"):
        fetch_bytes(server.url("/slow", "localhost"), settings_allowing("localhost", fetch_timeout_s=1.0))
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(("path", "error"), [
    ("/status/404", FetchFailed), ("/status/410", FetchFailed),
    ("/status/503", FetchUnavailable), ("/status/429", FetchUnavailable), ("/gzip", FetchFailed),
])
def test_answers_map_to_errors(server, path, error):
    with pytest.raises(error):
        fetch_bytes(server.url(path, "localhost"), settings_allowing("localhost"))


class CountingResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.answers[host]


def test_connection_is_pinned_to_the_checked_address(server):
    resolver = CountingResolver({"images.test": ["127.0.0.1"]})
    policy = UrlPolicy.parse("127.0.0.1/32", resolver)
    got = fetch_bytes(server.url("/file/a.png", "images.test"), settings_allowing(), policy=policy)
    assert got == PNG
    assert resolver.calls == ["images.test"]  # resolved once, by the guard; never by the system
    assert server.hits[-1].host == f"images.test:{server.port}"


def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(server):
    before = len(server.hits)
    policy = UrlPolicy(resolver=CountingResolver({"images.test": ["127.0.0.1"]}))
    with pytest.raises(FetchRefused, match=r"resolves to 127\.0\.0\.1, which is a loopback"):
        fetch_bytes(server.url("/file/a.png", "images.test"), settings_allowing(), policy=policy)
    assert len(server.hits) == before


def _tls_for(name: str, tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for ``name`` and a client context trusting it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_ctx = ssl.create_default_context(cadata=cert_pem.decode())
    return server_ctx, client_ctx


def test_https_keeps_sni_and_certificate_checks_while_pinned(tmp_path):
    server_ctx, client_ctx = _tls_for("images.test", tmp_path)
    srv = FileServer(tls=server_ctx)
    try:
        srv.add("a.png", PNG)
        settings = settings_allowing()
        resolver = CountingResolver({"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        policy = UrlPolicy.parse("127.0.0.1", resolver)
        with guarded_client(settings, verify=client_ctx) as client:
            url = srv.url("/file/a.png", "images.test")
            assert fetch_bytes(url, settings, policy=policy, client=client) == PNG
            with pytest.raises(FetchFailed, match="certificate|hostname"):  # name mismatch still caught
                fetch_bytes(srv.url("/file/a.png", "other.test"), settings, policy=policy, client=client)
        assert ipaddress.ip_address("127.0.0.1").is_loopback
    finally:
        srv.close()
