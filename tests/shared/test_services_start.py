"""Each service runs as its own process, migrates its own schema, answers /healthz,
/readyz (database, Redis, Kafka reachable) and /metrics, and stops cleanly on SIGTERM."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.processes import run_migrations, start_service
from tests.support.tokens import TestKey


@pytest.mark.parametrize("name", ["members", "alerts", "dispatch"])
async def test_service_process_is_ready_and_stops_gracefully(
    name: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "MUSTER_JWKS_URL": TestKey().write_jwks(tmp_path / "jwks.json")}
    run_migrations(name, env)
    service = start_service(name, env, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["checks"]) >= {"database", "kafka"}
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert "muster_outbox_pending" in metrics.text or "python_info" in metrics.text
            assert (await client.get("/openapi.json")).status_code == 200
    finally:
        code = service.stop()
    # uvicorn re-raises SIGTERM once its graceful shutdown has completed
    assert code in (0, -15), service.log()[-3000:]
    assert "Application shutdown complete" in service.log()
