"""precheck_url's shortcut for plain http(s) URLs (darkroom/netguard.py _passes_plain) reaches the same
verdict, and the same message, as the full parse through httpx for every URL here."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darkroom import netguard
from darkroom.errors import FetchRefused
from darkroom.netguard import UrlPolicy, _passes_plain, _precheck_parsed, precheck_url
from tests.unit.test_netguard import HOSTILE, POLICY

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("loopback_only")]

POLICIES = [POLICY, UrlPolicy.parse("dev.test, Metadata.Google.Internal, 192.168.0.0/16, ::1, 127.0.0.1")]

URLS = [url for url, _why in HOSTILE] + [
    "https://images.example.com/photo.png", "https://images.example.com", "https://images.example.com?x=1",
    "https://images.example.com#frag", "https://Images.Example.COM./a", "https://a.b:443/x", "http://a.b:80",
    "http://a.b:99999/x", "http://a.b:0/", "http://a.b:/x", "http://a.b:8o/x", "https://a.b:\u0663/x",
    "https://.", "https://..", "https://./x", "https://-/x", "http://a..b/", "http://a_b.example/",
    "https://8.8.8.8/x", "https://8.8.8.8./x", "https://010.8.8.8/x", "https://256.1.1.1/",
    "https://1.2.3/", "https://0x8.8.8.8/", "https://0x7f.1/", "https://2130706433./", "https://127.1./",
    "https://10.1/", "https://fe80/", "https://abc/", "https://dead.beef/", "https://0xdead.beef/",
    "http://metadata/", "http://instance-data./latest", "http://METADATA.goog/", "http://dev.test/",
    "http://localhost/", "http://[::1]/", "http://[2606:4700::1]/", "http://[2606:4700::1]:8080/",
    "https://b\u00fccher.example/x", "https://xn--bcher-kva.example/x", "https://\u24b6.example/",
    "https://a.b/\u00e9", "https://a.b/%zz", "https://a.b/a/../b", "https://a.b/./", "https://a.b/{}|^`",
    "https://a.b/?q=\"<>\"", "https://a.b/\ud800", "https://a.b/" + "x" * 70000, "https:a.b/x",
    "https:/a.b/x", "https:///a.b", "HTTPS://a.b/", "Http://a.b/", "https://a.b@c.d/", "https://a:b@c.d/",
    "https://a.b%2f@10.0.0.1/", "https://a.b#@10.0.0.1/", "https://a.b?@10.0.0.1/", "https://a.b/@10.0.0.1/",
    "https://a.b:1@10.0.0.1/", "https://%31%30.0.0.1/", "https://a.b\u3002c/", "https://a.b\x7f/",
    "https://exa mple.com/", "wss://a.b/", "https//a.b/", "https://a.b\\c/", 42, None, b"https://a.b/",
]


def outcome(check, url, policy):
    try:
        check(url, policy, "image_url")
    except FetchRefused as exc:
        return "refused", exc.detail
    except Exception as exc:  # noqa: BLE001 - whatever the full path raised, the shortcut must raise too
        return type(exc).__name__, str(exc)
    return "passed", ""


def assert_same(url, policy) -> None:
    policy._passed_hosts.clear()
    expected = outcome(_precheck_parsed, url, policy)
    assert outcome(precheck_url, url, policy) == expected  # first call: the name rules run
    assert outcome(precheck_url, url, policy) == expected  # second call: from the cache, if it passed
    if _passes_plain(url, policy):
        assert expected == ("passed", "")


@pytest.mark.parametrize("policy", POLICIES, ids=["default", "allow-list"])
@pytest.mark.parametrize("url", URLS)
def test_same_verdict_and_message_as_the_full_parse(url, policy):
    assert_same(url, policy)


def test_the_shortcut_takes_the_urls_users_send():
    for url in ["https://images.example.com/photo.png", "https://cdn.example.org:8443/a/b.jpg?sig=x&e=1#t",
                "http://public.test/x.png", "https://v3.fal.media/files/abc/def.png"]:
        assert _passes_plain(url, POLICY)


def test_only_hosts_that_pass_are_cached_and_the_cache_is_bounded(monkeypatch):
    policy = UrlPolicy.parse("")
    precheck_url("https://images.example.com/a.png", policy)
    with pytest.raises(FetchRefused):
        precheck_url("http://metadata.google.internal/", policy)
    with pytest.raises(FetchRefused):
        precheck_url("http://127.1/", policy)
    assert policy._passed_hosts == {"images.example.com": True}
    monkeypatch.setattr(netguard, "_MAX_PASSED_HOSTS", 8)
    for i in range(50):
        precheck_url(f"https://h{i}.example.com/", policy)
    assert len(policy._passed_hosts) <= 8


def test_the_cache_is_no_part_of_a_policys_identity():
    a, b = UrlPolicy.parse("dev.test"), UrlPolicy.parse("dev.test")
    precheck_url("https://x.example/", a)
    assert a == b and hash(a) == hash(b) and "passed_hosts" not in repr(a)


_host_chars = st.sampled_from(list("ab09.-_:@[]%xX") + ["\u00e9", "\u3002", "\ud800", " ", "\\", "/"])
_urls = st.builds(
    lambda scheme, sep, host, port, rest: f"{scheme}{sep}{host}{port}{rest}",
    st.sampled_from(["http", "https", "HTTPS", "ftp", "", "h"]),
    st.sampled_from(["://", ":/", ":", "//", ":///"]),
    st.one_of(st.text(_host_chars, max_size=12),
              st.sampled_from(["127.0.0.1", "10.0.0.1", "8.8.8.8", "0x7f.1", "127.1", "2130706433",
                               "metadata", "metadata.google.internal.", "dev.test", "[::1]", "[fd00::1]",
                               "localhost"])),
    st.sampled_from(["", ":", ":80", ":443", ":8080", ":x", ":99999"]),
    st.text(st.sampled_from(list("/?#@.a%\\ ") + ["\u00e9"]), max_size=6),
)


@settings(max_examples=400, deadline=None)
@given(url=_urls, which=st.sampled_from([0, 1]))
def test_generated_urls(url, which):
    assert_same(url, POLICIES[which])
