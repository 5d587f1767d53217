"""The outbound address rules (docs/decisions.md §18) against a stub resolver: no DNS, no connection.

Every test runs under ``loopback_only``, which fails it if anything tries to reach a non-loopback
address or asks DNS about a non-loopback name.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest

from darkroom.errors import FetchFailed, FetchRefused
from darkroom.netguard import UrlPolicy, blocked_reason, check_url, precheck_url

pytestmark = pytest.mark.usefixtures("loopback_only")

PUBLIC = "93.184.216.34"
DNS = {
    "public.test": [PUBLIC],
    "public6.test": ["2606:2800:220:1:248:1893:25c8:1946"],
    "intranet.test": ["10.1.2.3"],
    "router.test": ["192.168.1.1"],
    "docker.test": ["172.17.0.1"],
    "mixed.test": [PUBLIC, "127.0.0.1"],  # one bad address is enough to refuse
    "meta.test": ["169.254.169.254"],
    "ula.test": ["fd12:3456::1"],
    "cgnat.test": ["100.64.1.1"],
    "mapped.test": ["::ffff:10.0.0.1"],
    "metadata.google.internal": [PUBLIC],  # refused by name whatever it resolves to
    "dev.test": ["10.9.9.9"],
}


def stub_resolver(host: str, port: int) -> list[str]:
    import socket

    if host not in DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return DNS[host]


POLICY = UrlPolicy(resolver=stub_resolver)

HOSTILE = [
    # (url, what the message must say)
    ("http://10.0.0.1/x.png", "private"),
    ("http://172.16.5.4/x.png", "private"),
    ("http://172.31.255.255/x.png", "private"),
    ("http://192.168.0.10/x.png", "private"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fd00::1]/", "private"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
    ("http://[fc00::5]/", "private"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://100.100.100.200/", "cloud metadata"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://127.0.0.1/", "loopback"),
    ("http://127.255.0.9:8080/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
    ("http://[::ffff:a00:1]/", "private"),
    ("http://[64:ff9b::a00:1]/", "private"),  # NAT64 of 10.0.0.1
    ("http://[2002:a00:1::]/", "private"),  # 6to4 of 10.0.0.1
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://0x7f000001/", "loopback"),
    ("http://0177.0.0.1/", "not a valid URL"),  # httpx refuses octal; resolvers would say 127.0.0.1
    ("http://127.1/", "loopback"),
    ("http://intranet.test/x.png", "private"),
    ("http://router.test/", "private"),
    ("http://docker.test/", "private"),
    ("http://mixed.test/", "loopback"),
    ("http://meta.test/", "cloud metadata"),
    ("http://ula.test/", "private"),
    ("http://cgnat.test/", "CGNAT"),
    ("http://mapped.test/", "private"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata host"),
    ("http://METADATA.GOOGLE.INTERNAL./", "metadata host"),
    ("ftp://public.test/x.png", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://public.test/", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
    ("//public.test/x.png", "only http and https"),
    ("http://public.test@10.0.0.1/", "user info"),
    ("http://user:pw@public.test/", "user info"),
    ("http://public.test\\@10.0.0.1/", "backslash"),
    ("http://public.test /x", "whitespace"),
    ("http://public.test/\nHost: evil", "whitespace"),
    ("http:///x.png", "no host"),
    ("", "empty URL"),
]


@pytest.mark.parametrize(("url", "why"), HOSTILE)
def test_hostile_urls_are_refused(url, why):
    with pytest.raises(FetchRefused) as err:
        check_url(url, POLICY, what="image_url")
    assert why.lower() in err.value.detail.lower()
    assert err.value.detail.startswith("image_url: ")
    assert err.value.code == "fetch_refused" and not err.value.retryable


SYNTAX = ("only http", "user info", "backslash", "whitespace", "no host", "empty", "metadata host")


@pytest.mark.parametrize(("url", "why"), HOSTILE)
def test_precheck_refuses_all_that_needs_no_dns(url, why):
    if urlsplit(url).hostname in DNS and not why.startswith(SYNTAX):
        precheck_url(url, POLICY, what="image_url")  # a name: only resolving it tells (the worker does)
    else:
        with pytest.raises(FetchRefused):
            precheck_url(url, POLICY, what="image_url")


def test_precheck_leaves_names_to_the_worker():
    precheck_url("http://intranet.test/x.png", POLICY)  # only DNS can tell; the worker checks it


@pytest.mark.parametrize("url", ["http://public.test/a.png", "https://public6.test:8443/a?b=1",
                                 f"http://{PUBLIC}/x", "HTTP://PUBLIC.TEST/x"])
def test_public_urls_pass_and_name_the_addresses_to_connect_to(url):
    target = check_url(url, POLICY)
    assert target.addresses and all(blocked_reason(ipaddress.ip_address(a)) is None for a in target.addresses)
    assert target.host == target.host.lower()


def test_unknown_name_is_a_fetch_failure():
    with pytest.raises(FetchFailed, match="cannot resolve"):
        check_url("http://nowhere.test/x.png", POLICY)


def test_allow_list_by_name_and_by_network():
    policy = UrlPolicy.parse("dev.test, 192.168.0.0/16, ::1", stub_resolver)
    assert check_url("http://dev.test/x", policy).addresses == ("10.9.9.9",)
    assert check_url("http://192.168.7.7/x", policy).addresses == ("192.168.7.7",)
    assert check_url("http://router.test/x", policy).addresses == ("192.168.1.1",)
    assert check_url("http://[::1]:9/x", policy).addresses == ("::1",)
    with pytest.raises(FetchRefused):
        check_url("http://intranet.test/x", policy)  # 10/8 is not allowed
    with pytest.raises(FetchRefused):
        check_url("http://127.0.0.1/x", policy)  # ::1 allows IPv6 loopback only


def test_allow_list_comes_from_settings():
    from darkroom.settings import Settings

    policy = UrlPolicy.from_settings(Settings(fetch_allow_hosts="Dev.Test,10.0.0.0/8"), stub_resolver)
    assert policy.allow_hosts == frozenset({"dev.test"})
    assert check_url("http://intranet.test/", policy).addresses == ("10.1.2.3",)


def test_messages_never_echo_paths_or_queries():
    with pytest.raises(FetchRefused) as err:
        check_url("http://10.0.0.1/secret?token=abc", POLICY)
    assert "token" not in err.value.detail and "secret" not in err.value.detail
