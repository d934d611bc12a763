"""The signing key survives restarts (kept in the database, or in a PEM file), and the
other services' verifier (shared/auth.py over HTTP) accepts the tokens it signs."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.members.signing import from_pem
from shared.auth import TokenVerifier
from tests.members.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login
from tests.support.processes import run_migrations, start_service


async def test_key_in_database_survives_restart(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **service_env,
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    run_migrations("members", env)
    first = start_service("members", env, tmp_path)
    try:
        token = await login(first.url, ADMIN_EMAIL, ADMIN_PASSWORD)
        jwks_url = f"{first.url}/.well-known/jwks.json"
        principal = await TokenVerifier(jwks_url).verify(token)
        assert principal.role == "admin" and principal.is_admin
        kids = [k["kid"] for k in httpx.get(jwks_url).json()["keys"]]
    finally:
        first.stop()
    second = start_service("members", env, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=second.url) as client:
            assert [
                k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]
            ] == kids
            # a token from before the restart is still good; the admin was not created twice
            accounts = await client.get("/accounts", headers={"Authorization": f"Bearer {token}"})
            assert accounts.status_code == 200
            assert [a["email"] for a in accounts.json() if a["role"] == "admin"] == [ADMIN_EMAIL]
    finally:
        second.stop()


async def test_key_from_file(service_env: dict[str, str], tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "signing.pem"
    env = {
        **service_env,
        "MUSTER_SIGNING_KEY_PATH": str(key_path),
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    run_migrations("members", env)
    service = start_service("members", env, tmp_path)
    try:
        assert key_path.exists() and oct(key_path.stat().st_mode)[-3:] == "600"
        kid = from_pem(key_path.read_text()).kid
        jwks = httpx.get(f"{service.url}/.well-known/jwks.json").json()
        assert kid in [k["kid"] for k in jwks["keys"]]
        token = await login(service.url, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert (await TokenVerifier(f"{service.url}/.well-known/jwks.json").verify(token)).is_admin
    finally:
        service.stop()
