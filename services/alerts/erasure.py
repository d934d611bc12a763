"""A member's erasure, as alerts applies it (issue 10, defect 12; docs/security.md).

Members erases a member and publishes a tombstone (null value) under their id on
`muster.members.state`; alerts removes them from the targeting index and, here, from its
own schema. What the board and the counts need stays: ids, statuses, answers, times,
waves, distances. What identifies the person goes: every `phone` column becomes NULL,
every message body and provider error text "[erased]", and the answer tokens are
replaced, so an old link opens nothing. Alerts never receives names.

A STOP must outlive the erasure: a number that opted out and is later re-added (the
same person joining again, or the number given to someone else who never asked to be
texted) stays opted out until it sends START. So the opt-out is not deleted but moved
to `erased_opt_outs` as HMAC-SHA256(key, number): it cannot be read back into a number,
and a number can still be matched against it. The key is `ALERTS_PSEUDONYM_KEY`; unset,
a random key is created once and kept in `pseudonym_key` (set the variable in
production, so a copy of the database alone cannot test guessed numbers).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.alerts.models import (
    alerts,
    erased_opt_outs,
    inbound_messages,
    outbound_messages,
    pseudonym_key,
    sms_opt_outs,
)
from services.alerts.settings import Settings

#: what an erased message body or error text reads
ERASED = "[erased]"

#: the generated key of each schema, read once per process (it never changes)
_generated_keys: dict[str, bytes] = {}


def phone_pseudonym(phone: str, key: bytes) -> str:
    """The keyed hash an erased member's opt-out is kept under."""
    return hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()


async def key_of(session: AsyncSession, settings: Settings) -> bytes:
    """The pseudonym key: the configured one, else the schema's generated one."""
    configured = settings.pseudonym_key.get_secret_value()
    if configured:
        return configured.encode()
    cached = _generated_keys.get(settings.schema_name)
    if cached is not None:
        return cached
    await session.execute(
        pg_insert(pseudonym_key)
        .values(id=1, key=secrets.token_bytes(32))
        .on_conflict_do_nothing(index_elements=["id"])
    )
    key = bytes(
        (await session.execute(select(pseudonym_key.c.key).where(pseudonym_key.c.id == 1)))
        .scalars()
        .one()
    )
    _generated_keys[settings.schema_name] = key
    return key


@dataclass(frozen=True)
class OptOuts:
    """Numbers that must not be texted: those that sent STOP, and those of erased
    members that had (matched by their keyed hash)."""

    plain: frozenset[str]
    hashed: frozenset[str] = frozenset()
    key: bytes = field(default=b"", repr=False)

    def __contains__(self, phone: object) -> bool:
        if not isinstance(phone, str):
            return False
        if phone in self.plain:
            return True
        return bool(self.hashed) and phone_pseudonym(phone, self.key) in self.hashed

    def __iter__(self) -> Iterator[str]:
        return iter(self.plain)

    def __len__(self) -> int:
        return len(self.plain) + len(self.hashed)


async def opt_outs(session: AsyncSession, settings: Settings) -> OptOuts:
    plain = frozenset((await session.execute(select(sms_opt_outs.c.phone))).scalars())
    hashed = frozenset((await session.execute(select(erased_opt_outs.c.phone_hash))).scalars())
    if not hashed:
        return OptOuts(plain)
    return OptOuts(plain, hashed, await key_of(session, settings))


async def forget_erased_opt_out(session: AsyncSession, settings: Settings, phone: str) -> None:
    """START from a number lifts an opt-out kept from an erased member too."""
    if await session.scalar(select(func.count()).select_from(erased_opt_outs)):
        digest = phone_pseudonym(phone, await key_of(session, settings))
        await session.execute(delete(erased_opt_outs).where(erased_opt_outs.c.phone_hash == digest))


def _count(result: Any) -> int:
    """Rows an UPDATE changed."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


@dataclass(frozen=True)
class Erased:
    alerts: int
    outbound: int
    inbound: int
    opt_outs: int


async def erase_member(
    session: AsyncSession, settings: Settings, member_id: UUID, known_phones: Iterable[str]
) -> Erased:
    """Erase the member's phone numbers and message texts from the alerts schema, in the
    caller's transaction. `known_phones`: the member's numbers alerts knows elsewhere
    (the targeting index), besides those on their alert rows. Idempotent."""
    phones = {p for p in known_phones if p}
    phones |= {
        p
        for p in (
            await session.execute(
                select(alerts.c.phone)
                .where(alerts.c.member_id == member_id, alerts.c.phone.is_not(None))
                .distinct()
            )
        ).scalars()
        if p
    }
    alert_ids = select(alerts.c.id).where(alerts.c.member_id == member_id).scalar_subquery()
    moved = 0
    if phones:
        stopped = (
            await session.execute(
                delete(sms_opt_outs)
                .where(sms_opt_outs.c.phone.in_(phones))
                .returning(sms_opt_outs.c.phone, sms_opt_outs.c.opted_out_at)
            )
        ).all()
        if stopped:
            key = await key_of(session, settings)
            await session.execute(
                pg_insert(erased_opt_outs)
                .values(
                    [
                        {
                            "phone_hash": phone_pseudonym(s.phone, key),
                            "opted_out_at": s.opted_out_at,
                        }
                        for s in stopped
                    ]
                )
                .on_conflict_do_nothing()
            )
        moved = len(stopped)
    outbound = _count(
        await session.execute(
            update(outbound_messages)
            .where(outbound_messages.c.alert_id.in_(alert_ids))
            .values(
                phone=None,
                body=ERASED,
                error=text(f"CASE WHEN error IS NULL THEN NULL ELSE '{ERASED}' END"),
                # nothing more is sent to someone who no longer exists here
                status=text(
                    "CASE WHEN status IN ('pending', 'sending') THEN 'cancelled' ELSE status END"
                ),
            )
        )
    )
    inbound_match: ColumnElement[bool] = inbound_messages.c.alert_id.in_(alert_ids)
    if phones:
        inbound_match = or_(inbound_match, inbound_messages.c.phone.in_(phones))
    inbound = _count(
        await session.execute(
            update(inbound_messages)
            .where(inbound_match)
            .values(phone=None, body=ERASED, answer=None)
        )
    )
    erased_alerts = _count(
        await session.execute(
            update(alerts)
            .where(alerts.c.member_id == member_id)
            # a fresh unguessable value: the old link in the SMS now opens nothing
            .values(phone=None, token=text("'erased-' || gen_random_uuid()::text"))
        )
    )
    return Erased(erased_alerts, outbound, inbound, moved)
