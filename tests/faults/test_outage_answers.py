"""What a request answers when the infrastructure under it is gone (the HTTP half of
the PostgreSQL restart test, checked error by error without any server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest
import redis.exceptions
import sqlalchemy.exc
from fastapi import APIRouter

from shared.service import RETRY_AFTER_S, ServiceRuntime, create_app
from shared.settings import MusterSettings

OUTAGES: dict[str, BaseException] = {
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "sqlalchemy-wrapped": sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, asyncpg.CannotConnectNowError("the database system is starting up")
    ),
    "interface": sqlalchemy.exc.InterfaceError(
        "SELECT 1", {}, asyncpg.InterfaceError("connection is closed")
    ),
    "admin-shutdown": asyncpg.AdminShutdownError("terminating connection"),
    "redis": redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
}
BUGS: dict[str, BaseException] = {
    "integrity": sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
    "key": KeyError("missing"),
}


def raising(error: BaseException) -> Callable[[], Awaitable[None]]:
    async def endpoint() -> None:
        raise error

    return endpoint


def app_raising() -> httpx.AsyncClient:
    router = APIRouter()
    for name, error in {**OUTAGES, **BUGS}.items():
        router.add_api_route(f"/{name}", raising(error), methods=["GET"])
    runtime = ServiceRuntime(MusterSettings(), use_database=False, use_redis=False)
    app = create_app(runtime, title="outage answers", routers=[router])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://service")


@pytest.mark.parametrize("outage", sorted(OUTAGES))
async def test_an_outage_is_503_with_retry_after(outage: str) -> None:
    """Guaranteed: a request that fails because PostgreSQL, Redis or Kafka is unreachable
    gets 503, `Retry-After` and a JSON detail saying to try again, never a 500.
    What the user sees: "unreachable right now; try again in 5 seconds"."""
    async with app_raising() as client:
        response = await client.get(f"/{outage}")
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    assert "try again" in response.json()["detail"]


@pytest.mark.parametrize("bug", sorted(BUGS))
async def test_a_bug_is_still_a_500(bug: str) -> None:
    """A constraint violation or a programming error is not an outage: retrying would
    not help, so it stays a 500 (and is logged as one)."""
    async with app_raising() as client:
        response = await client.get(f"/{bug}")
    assert response.status_code == 500
