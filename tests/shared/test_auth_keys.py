"""Staff tokens keep verifying while the JWKS cannot be fetched (for a bounded time), and
tokens naming unknown keys cannot flood the JWKS or hold up the others.

The JWKS comes from a real HTTP server on a local port, which the test can stop (its
port then refuses connections) or make hang."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from shared.auth import TokenError, TokenVerifier
from tests.support.tokens import TestKey


class JwksServer:
    """Serves one JWKS over HTTP/1.1; `stop` closes the port, `hang` never answers."""

    def __init__(self, jwks: dict[str, object]) -> None:
        self.body = json.dumps(jwks).encode()
        self.requests = 0
        self.hanging = False
        self._released = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._released.set()  # a hanging request ends now: no task outlives the test
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.hanging:
                await self._released.wait()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(self.body)}\r\nconnection: close\r\n\r\n".encode()
                + self.body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


class ManualClock:
    """The verifier's clock, moved by the test instead of waiting real minutes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def key() -> TestKey:
    return TestKey()


@pytest.fixture
async def jwks(key: TestKey) -> AsyncIterator[JwksServer]:
    server = JwksServer(key.jwks())
    await server.start()
    yield server
    await server.stop()


async def test_cached_keys_outlive_a_jwks_outage_for_a_bounded_time(
    key: TestKey, jwks: JwksServer
) -> None:
    clock = ManualClock()
    verifier = TokenVerifier(
        jwks.url, refresh_interval_s=300, stale_max_s=86400, min_fetch_interval_s=30, clock=clock
    )
    token = key.token("coordinator", ["north"], expires_in_s=7 * 86400)
    assert (await verifier.verify(token)).sections == {"north"}

    await jwks.stop()  # members is down
    clock.now += 301  # past the refresh interval: a refresh is due and fails
    assert (await verifier.verify(token)).role == "coordinator"
    await asyncio.sleep(0.2)  # let the background refresh fail
    clock.now += 3600 * 5
    assert (await verifier.verify(token)).role == "coordinator"
    assert verifier.fetches >= 2  # it did try to refresh

    clock.now += 86400  # past the documented bound: the keys are no longer trusted
    with pytest.raises(TokenError, match=r"out of date|cannot fetch"):
        await verifier.verify(token)

    await jwks.start()  # members is back on the same address
    clock.now += 31
    assert (await verifier.verify(token)).role == "coordinator"


async def test_unknown_kids_cause_at_most_one_fetch_per_window(
    key: TestKey, jwks: JwksServer
) -> None:
    clock = ManualClock()
    verifier = TokenVerifier(jwks.url, min_fetch_interval_s=30, clock=clock)
    await verifier.verify(key.token())
    assert jwks.requests == 1

    junk = [TestKey(private_key=key.private_key).token() for _ in range(100)]
    outcomes = await asyncio.gather(*(verifier.verify(t) for t in junk), return_exceptions=True)
    assert all(isinstance(o, TokenError) for o in outcomes)
    assert jwks.requests == 1  # the first check's fetch is less than 30 s old

    clock.now += 30
    outcomes = await asyncio.gather(*(verifier.verify(t) for t in junk), return_exceptions=True)
    assert all(isinstance(o, TokenError) for o in outcomes)
    assert jwks.requests == 2  # one fetch, shared by 100 concurrent checks

    outcomes = await asyncio.gather(*(verifier.verify(t) for t in junk), return_exceptions=True)
    assert jwks.requests == 2
    assert (await verifier.verify(key.token())).role == "coordinator"


async def test_a_rotated_key_is_fetched_when_a_token_first_names_it(jwks: JwksServer) -> None:
    clock = ManualClock()
    old, new = TestKey(), TestKey()
    jwks.body = json.dumps(old.jwks()).encode()
    verifier = TokenVerifier(jwks.url, min_fetch_interval_s=30, clock=clock)
    await verifier.verify(old.token())
    jwks.body = json.dumps({"keys": old.jwks()["keys"] + new.jwks()["keys"]}).encode()
    clock.now += 30
    assert (await verifier.verify(new.token())).role == "coordinator"
    assert (await verifier.verify(old.token())).role == "coordinator"


async def test_a_hanging_jwks_does_not_hold_up_tokens_with_known_keys(
    key: TestKey, jwks: JwksServer
) -> None:
    clock = ManualClock()
    verifier = TokenVerifier(jwks.url, fetch_timeout_s=30, clock=clock)
    token = key.token()
    await verifier.verify(token)

    jwks.hanging = True
    clock.now += 301  # a refresh is due, and members will not answer it
    junk = TestKey(private_key=key.private_key).token()
    junk_check = asyncio.create_task(verifier.verify(junk))  # waits on the hanging fetch
    await asyncio.sleep(0.2)
    assert jwks.requests == 2  # the refresh is in flight, hanging

    started = time.monotonic()
    for _ in range(50):
        assert (await asyncio.wait_for(verifier.verify(token), timeout=2)).role == "coordinator"
    assert time.monotonic() - started < 2
    assert not junk_check.done()
    assert jwks.requests == 2  # no second fetch while one is in flight
    junk_check.cancel()
    await jwks.stop()
