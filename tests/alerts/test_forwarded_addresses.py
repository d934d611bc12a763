"""Behind a proxy the answer page's per-address limit keys on the forwarded client
address, and only a configured proxy is believed (issue 10, defect 4: behind the
Ingress every member shared the controller's limit).

One alerts process trusts 127.0.0.2 as its proxy (MUSTER_FORWARDED_ALLOW_IPS); the test
connects from 127.0.0.2 (the proxy) and from 127.0.0.1 (any other peer): loopback
addresses all reach the service, so both cases run against the same process."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx

from tests.support.processes import start_service

LIMIT = 3


async def _statuses(client: httpx.AsyncClient, forwarded_for: list[str]) -> list[int]:
    # a fresh token each time: only the per-address limit can refuse these
    return [
        (
            await client.get(
                f"/r/{secrets.token_urlsafe(16)}", headers={"X-Forwarded-For": address}
            )
        ).status_code
        for address in forwarded_for
    ]


async def test_forwarded_addresses_are_believed_only_from_the_configured_proxy(
    alerts_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **alerts_env,
        "MUSTER_FORWARDED_ALLOW_IPS": "127.0.0.2",
        "ALERTS_ANSWER_RATE_PER_IP_PER_MIN": str(LIMIT),
        "ALERTS_ANSWER_RATE_PER_TOKEN_PER_MIN": str(LIMIT),
    }
    service = start_service("alerts", env, tmp_path)
    proxy = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    try:
        async with (
            httpx.AsyncClient(base_url=service.url, timeout=10, transport=proxy) as via_proxy,
            httpx.AsyncClient(base_url=service.url, timeout=10) as direct,
        ):
            if time.time() % 60 > 45:  # keep every request in one minute window
                await asyncio.sleep(61 - time.time() % 60)
            # through the trusted proxy: each member has a limit of their own
            assert await _statuses(via_proxy, ["203.0.113.7"] * (LIMIT + 1)) == [404] * LIMIT + [
                429
            ]
            assert await _statuses(via_proxy, ["203.0.113.8", "198.51.100.9"]) == [404, 404]
            # a chain: the address the proxy saw (rightmost) counts, not what the client wrote
            chained = await _statuses(via_proxy, ["10.9.9.9, 203.0.113.7"])
            assert chained == [429]

            # from a peer that is not a configured proxy the header is ignored: one limit
            spoofed = [f"192.0.2.{i}" for i in range(LIMIT + 2)]
            assert await _statuses(direct, spoofed) == [404] * LIMIT + [429, 429]

            # the per-token limit keys on the token, whatever address the request is from
            token = secrets.token_urlsafe(16)
            by_token = [
                (
                    await via_proxy.get(f"/r/{token}", headers={"X-Forwarded-For": f"100.64.0.{i}"})
                ).status_code
                for i in range(LIMIT + 1)
            ]
            assert by_token == [404] * LIMIT + [429]
    finally:
        service.stop()
