"""Stream tickets: how a browser's EventSource, which cannot send an Authorization
header, opens the live board.

A console with a token asks `POST /emergencies/{id}/stream-ticket` and opens
`GET /emergencies/{id}/stream?ticket=...`. A ticket is `secrets.token_urlsafe(24)`
(192 random bits), bound to the principal and the emergency, valid for `TTL_S` seconds
and good for one use: it lives in Redis under a key with that TTL and is taken with
GETDEL, so two requests racing with the same ticket cannot both get it. Redis rather
than PostgreSQL: a ticket is ephemeral, Redis expires it by itself (no table, no
clean-up job) and GETDEL is one atomic round trip.

The key holds the SHA-256 of the ticket, not the ticket itself, so whoever reads Redis'
keys cannot replay one; the value holds the account id, role and sections (no e-mail).
Nothing here logs a ticket.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid

import redis.asyncio as redis

from shared.auth import Principal, principal_from_claims

TTL_S = 30


def key(prefix: str, ticket: str) -> str:
    return f"{prefix}dispatch:stream-ticket:{hashlib.sha256(ticket.encode()).hexdigest()}"


async def issue(
    client: redis.Redis, prefix: str, principal: Principal, emergency_id: uuid.UUID
) -> str:
    ticket = secrets.token_urlsafe(24)
    value = {
        "sub": principal.account_id,
        "role": principal.role,
        "sections": sorted(principal.sections),
        "emergency_id": str(emergency_id),
    }
    await client.set(key(prefix, ticket), json.dumps(value), ex=TTL_S)
    return ticket


async def redeem(
    client: redis.Redis, prefix: str, ticket: str, emergency_id: uuid.UUID
) -> Principal | None:
    """The principal the ticket was issued to, if it is for this emergency and neither
    used nor expired (None otherwise). Taking it uses it up, whatever the outcome."""
    if not ticket or len(ticket) > 200:
        return None
    raw = await client.getdel(key(prefix, ticket))
    if raw is None:
        return None
    value = json.loads(raw)
    if value.get("emergency_id") != str(emergency_id):
        return None
    return principal_from_claims(value)
