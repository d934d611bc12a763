"""The webhook SSRF rule, pure: which addresses webhooks may reach, and URLs checked
by resolving their host (IP literals and `localhost`, no outside DNS needed)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatch.egress import RefusedTarget, forbidden, resolve_target


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        # issue 10, defect 16: site-local, which Python's is_global lets through
        ("fec0::1", "site-local"),
        ("feff:ffff::1", "site-local"),
    ],
)
def test_forbidden_addresses(address: str, reason: str) -> None:
    why = forbidden(ipaddress.ip_address(address))
    assert why is not None and reason in why


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_allowed(address: str) -> None:
    assert forbidden(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://localhost/x",
        "http://0x7f000001/",  # another spelling of 127.0.0.1
        "http://[::1]:9000/",
        "https://169.254.169.254/latest/meta-data/",
        "ftp://8.8.8.8/",
        "http://[fec0::5]:8080/hook",
    ],
)
async def test_refused_urls(url: str) -> None:
    with pytest.raises(RefusedTarget):
        await resolve_target(url)


async def test_public_url_is_pinned_to_its_checked_address() -> None:
    target = await resolve_target("https://8.8.8.8:8443/hook?a=1")
    assert str(target.address) == "8.8.8.8"
    assert str(target.pinned_url()) == "https://8.8.8.8:8443/hook?a=1"
    assert target.host_header == "8.8.8.8:8443"


@given(st.integers(min_value=0, max_value=2**118 - 1))
def test_all_of_fec0_slash_10_is_refused(low_bits: int) -> None:
    address = ipaddress.IPv6Address((0xFEC0 << 112) | low_bits)
    assert forbidden(address) is not None
