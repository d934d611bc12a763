"""Where dispatch may POST a webhook: public addresses only (SSRF guard).

The deliverer runs inside the organisation's network, so a subscription URL naming (or
resolving to) a loopback, private, link-local (cloud metadata at 169.254.169.254),
multicast, reserved or unspecified address would let whoever registers a webhook make
dispatch POST to internal services. `forbidden` is the pure rule; `resolve_target`
resolves a URL's host and checks every address it resolves to. It is checked when a
subscription is created and again before each delivery, and the delivery connects to
the very address that was checked (the Host header and TLS server name stay the URL's),
so a name that is re-pointed between the check and the connection (DNS rebinding)
cannot slip through. `DISPATCH_WEBHOOK_ALLOW_PRIVATE` turns the guard off (tests, or a
receiver on the organisation's own network).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedTarget(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def forbidden(address: IPAddress) -> str | None:
    """Why webhooks may not reach `address` (None: it is a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:10.0.0.1 and friends reach the IPv4 address they embed
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return forbidden(embedded)
        if address.teredo is not None:
            return forbidden(address.teredo[1])
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        # fec0::/10, deprecated (RFC 3879) but still routed inside some networks, and
        # Python counts it as global
        return "a site-local address"
    if not address.is_global:
        # shared address space (100.64/10), documentation ranges, site-local, ...
        return "a non-public address"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL and the address to connect to."""

    url: httpx.URL
    address: IPAddress

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")

    def pinned_url(self) -> httpx.URL:
        """The URL with its host replaced by the checked address."""
        return self.url.copy_with(host=str(self.address))

    @property
    def sni_hostname(self) -> str:
        return self.url.raw_host.decode("ascii")


async def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise RefusedTarget(f"host {host} does not resolve") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # an IPv6 sockaddr may carry a zone (fe80::1%eth0): the zone is not the address
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise RefusedTarget(f"host {host} does not resolve")
    return addresses


async def resolve_target(url: str) -> Target:
    """The address to POST `url` to, after checking every address its host resolves to
    (one forbidden address refuses the URL). Raise RefusedTarget saying why."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise RefusedTarget("not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise RefusedTarget("needs an http(s) URL with a host")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await _addresses(host, port)
    for address in addresses:
        reason = forbidden(address)
        if reason is not None:
            raise RefusedTarget(f"host {host} is or resolves to {reason} ({address})")
    return Target(parsed, addresses[0])
