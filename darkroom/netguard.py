"""Where Darkroom may connect on a user's behalf (docs/decisions.md §18): the address rules for input URLs and
webhook targets.

:func:`check_url` parses a URL, refuses what is not plain ``http(s)://host[:port]/…``, resolves the
host **once** and refuses it unless every address it resolves to is publicly routable. The caller
then connects to one of the returned, checked addresses (see ``darkroom.outbound``), never to the
name again, so a DNS answer that changes between the check and the connection (DNS rebinding) cannot
steer it. :func:`precheck_url` applies the same rules without DNS, for a cheap synchronous 422 at
submit.

Refused: other schemes, user info (``http://good.example@10.0.0.1/``), backslashes, whitespace and
control characters, and any address that is loopback, private (10/8, 172.16/12, 192.168/16,
fc00::/7), link-local (169.254/16, fe80::/10), multicast, unspecified, reserved, shared CGNAT space
(100.64/10), a cloud metadata address or otherwise not globally routable; IPv4 addresses embedded in
IPv6 (``::ffff:a.b.c.d``, ``::a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by
the IPv4 address. Cloud metadata host names are refused by name. ``fetch_allow_hosts`` names hosts
(exact names, case-insensitive) or networks (CIDRs, single addresses) allowed despite the rules.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from darkroom.errors import FetchFailed, FetchRefused, FetchUnavailable

if TYPE_CHECKING:
    from darkroom.settings import Settings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

SCHEMES = ("http", "https")
METADATA_HOSTS = frozenset({
    "metadata.google.internal", "metadata.goog", "metadata", "instance-data",
    "instance-data.ec2.internal", "metadata.azure.com",
})
METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
})
CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_LEGACY_V4 = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)
# http(s)://name[:port] then the path, query, fragment or the end: for such an ASCII URL httpx takes the host
# as written (lower-cased) and rejects nothing, so the name rules alone decide (see _passes_plain)
_PLAIN_URL = re.compile(r"https?://([A-Za-z0-9.-]+)(?::[0-9]+)?(?=[/?#]|\Z)")
_IPV4_STYLE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")  # httpx checks these itself (no octal)
_MAX_URL_LENGTH = 65536  # httpx's
_MAX_PASSED_HOSTS = 4096
HINT = "set DARKROOM_FETCH_ALLOW_HOSTS to allow specific hosts"


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the order the system resolver gives them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


@dataclass(frozen=True)
class UrlPolicy:
    """The allow-list and the resolver in force (tests pass a stub resolver: no DNS, no connection)."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver = system_resolver
    # host names that passed the name rules (precheck_url's cache; the rules depend on nothing else)
    _passed_hosts: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> UrlPolicy:
        return cls.parse(settings.fetch_allow_hosts, resolver or system_resolver)

    @classmethod
    def parse(cls, allow: str | Iterable[str], resolver: Resolver = system_resolver) -> UrlPolicy:
        """``allow``: comma-separated (or an iterable of) host names, addresses and CIDRs."""
        items = allow.split(",") if isinstance(allow, str) else allow
        hosts, networks = set(), []
        for item in (i.strip().lower() for i in items):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                hosts.add(item.rstrip("."))
        return cls(frozenset(hosts), tuple(networks), resolver)

    def allows_address(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow_networks)


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to one of ``addresses`` (in order), send ``url`` with its own Host."""

    url: httpx.URL
    host: str  # ASCII (IDNA) host name or address, no brackets
    port: int
    addresses: tuple[str, ...]

    @property
    def label(self) -> str:
        """``scheme://host:port`` for messages (never the path or query, which may hold tokens)."""
        return _label(self.url)


# --- address rules ------------------------------------------------------------------------------------


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if ip.version == 4:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64) or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why Darkroom must not connect to ``ip`` (``"a loopback address"``, …), or None when it may."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        reason = blocked_reason(inner)
        return f"{reason} (embedded in an IPv6 address)" if reason else None
    checks = (
        (ip in METADATA_ADDRESSES, "a cloud metadata address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "the unspecified address"),
        (ip.version == 4 and ip in CGNAT, "a shared (CGNAT) address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (ip.version == 6 and ip.is_site_local, "a site-local address"),
        (not ip.is_global, "not a globally routable address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _literal_ip(host: str) -> IPAddress | None:
    """``host`` as an address, including the legacy IPv4 forms resolvers accept (``127.1``, ``0x7f.1``,
    ``2130706433``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_V4.fullmatch(host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


# --- URL checks ---------------------------------------------------------------------------------------


def _parse(url: str, what: str) -> tuple[httpx.URL, str, int]:
    """Syntax rules: scheme, no user info, no odd characters; returns (url, ascii host, port)."""
    if not isinstance(url, str) or not url:
        raise FetchRefused(f"{what}: empty URL")
    if _BAD_CHARS.search(url):
        raise FetchRefused(f"{what}: the URL contains whitespace, control characters or a backslash")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise FetchRefused(f"{what}: not a valid URL ({exc})") from None
    if parsed.scheme not in SCHEMES:
        scheme = parsed.scheme or "none"
        raise FetchRefused(f"{what}: only http and https URLs can be fetched, not {scheme!r}")
    authority = url.split("//", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if parsed.userinfo or "@" in authority:
        raise FetchRefused(f"{what}: URLs with user info (user:password@host) are not accepted")
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise FetchRefused(f"{what}: the URL has no host")
    return parsed, host, parsed.port or (443 if parsed.scheme == "https" else 80)


def _refuse(what: str, label: str, address: str, reason: str) -> FetchRefused:
    via = "" if address in label else f" resolves to {address}, which"
    return FetchRefused(
        f"{what}: {label}{via} is {reason}; Darkroom does not connect to loopback, private, link-local, "
        f"multicast, reserved or cloud metadata addresses ({HINT})"
    )


def _check_host_name(what: str, host: str, label: str, policy: UrlPolicy) -> IPAddress | None:
    """Name rules (metadata names); returns the host as an address when it is a literal one."""
    if host in policy.allow_hosts:
        return None
    ip = _literal_ip(host)
    if ip is None and host in METADATA_HOSTS:
        raise FetchRefused(f"{what}: {label} is a cloud metadata host ({HINT})")
    if ip is not None and not policy.allows_address(ip):
        reason = blocked_reason(ip)
        if reason:
            raise _refuse(what, label, str(ip), reason)
    return ip


def precheck_url(url: str, settings_or_policy: Settings | UrlPolicy, what: str = "URL") -> None:
    """The rules that need no DNS (scheme, user info, literal addresses, metadata names): FetchRefused."""
    policy = _policy(settings_or_policy, None)
    if not _passes_plain(url, policy):
        _precheck_parsed(url, policy, what)


def _precheck_parsed(url: str, policy: UrlPolicy, what: str) -> None:
    parsed, host, _port = _parse(url, what)
    _check_host_name(what, host, _label(parsed), policy)


def _passes_plain(url: str, policy: UrlPolicy) -> bool:
    """True when ``url`` is a plain ASCII ``http(s)://name[:port]…`` whose host passes the name rules:
    what :func:`_precheck_parsed` would find, without httpx's parse (a third of the time; the verdict
    per host is cached). False sends the URL the full way, which words any refusal."""
    if type(url) is not str or len(url) > _MAX_URL_LENGTH or not url.isascii() or _BAD_CHARS.search(url):
        return False
    match = _PLAIN_URL.match(url)
    if match is None or _IPV4_STYLE.fullmatch(match[1]):
        return False
    host = match[1].lower().rstrip(".")
    if not host:
        return False
    passed = policy._passed_hosts
    if host in passed:
        return True
    try:
        _check_host_name("", host, "", policy)
    except FetchRefused:
        return False
    if len(passed) >= _MAX_PASSED_HOSTS:
        passed.clear()
    passed[host] = True
    return True


def check_url(
    url: str,
    settings_or_policy: Settings | UrlPolicy,
    resolver: Resolver | None = None,
    what: str = "URL",
) -> Target:
    """Parse, resolve once and check every address; the Target lists the addresses to connect to.

    Raises FetchRefused (permanent, 422) when a rule forbids the URL, FetchFailed when the name does
    not exist and FetchUnavailable when resolution failed for a temporary reason.
    """
    policy = _policy(settings_or_policy, resolver)
    parsed, host, port = _parse(url, what)
    label = _label(parsed)
    literal = _check_host_name(what, host, label, policy)
    addresses = [str(literal)] if literal is not None else _resolve(policy, host, port, what, label)
    if host not in policy.allow_hosts:
        for address in addresses:
            ip = ipaddress.ip_address(address)
            reason = None if policy.allows_address(ip) else blocked_reason(ip)
            if reason:
                raise _refuse(what, label, address, reason)
    return Target(parsed, host, port, tuple(addresses))


def _label(parsed: httpx.URL) -> str:
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii', 'replace')}"


def _policy(settings_or_policy: Settings | UrlPolicy, resolver: Resolver | None) -> UrlPolicy:
    if isinstance(settings_or_policy, UrlPolicy):
        if resolver is None:
            return settings_or_policy
        return UrlPolicy(settings_or_policy.allow_hosts, settings_or_policy.allow_networks, resolver)
    return UrlPolicy.from_settings(settings_or_policy, resolver)


def _resolve(policy: UrlPolicy, host: str, port: int, what: str, label: str) -> list[str]:
    try:
        addresses = policy.resolver(host, port)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)):
            raise FetchUnavailable(f"{what}: cannot resolve {label} right now ({exc})") from None
        raise FetchFailed(f"{what}: cannot resolve {label} ({exc}); check the URL") from None
    except (OSError, UnicodeError) as exc:
        raise FetchFailed(f"{what}: cannot resolve {label} ({exc}); check the URL") from None
    valid = []
    for address in addresses:
        try:
            valid.append(str(ipaddress.ip_address(address)))
        except ValueError:
            log.warning("resolver returned %r for %s; ignoring it", address, host)
    if not valid:
        raise FetchFailed(f"{what}: {label} resolves to no address")
    return valid
