"""Qualification expiry reminders (issue 11) with two alerts processes looking every
half second: each qualification expiring within 30 days gets its holder exactly one SMS,
in their language; one expiring later, a suspended member's and a number that sent STOP
get none; a reminder claimed by a process that died is sent by the other."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.alerts.fake_twilio import FakeTwilio
from tests.alerts.members import MEMBERS_STATE, member, publish_members, wait_indexed
from tests.conftest import Topics
from tests.support.processes import start_service


async def test_one_reminder_per_qualification_with_two_processes(
    alerts_env: dict[str, str],
    twilio: FakeTwilio,
    topics: Topics,
    redis_client,  # type: ignore[no-untyped-def]
    admin_engine: AsyncEngine,
    schema: str,
    tmp_path: Path,
) -> None:
    today = datetime.now(UTC).date()
    soon, later = today + timedelta(days=10), today + timedelta(days=45)
    arta = member(language="it", qualifications=[("FIRST_AID", soon), ("CPR", later)])
    besnik = member(language="en", qualifications=[("SAR", today + timedelta(days=30))])
    suspended = member(status="suspended", qualifications=[("CPR", soon)])
    opted_out = member(qualifications=[("CPR", soon)])
    # a reminder a dead process claimed and never sent (its sender heartbeat is gone)
    claimed = member(language="fr", qualifications=[("DRIVER", soon)])
    async with admin_engine.begin() as conn:
        await conn.execute(
            text(f'INSERT INTO "{schema}".sms_opt_outs (phone) VALUES (:p)'),
            {"p": opted_out.phone},
        )
        await conn.execute(
            text(
                f'INSERT INTO "{schema}".qualification_reminders '
                "(member_id, code, expires_at, status, claimed_by, attempts) "
                "VALUES (:m, 'DRIVER', :d, 'sending', 'a-dead-process', 1)"
            ),
            {"m": claimed.member_id, "d": soon},
        )
    everyone = [arta, besnik, suspended, opted_out, claimed]
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), everyone)
    env = {**alerts_env, "ALERTS_EXPIRY_CHECK_INTERVAL_S": "0.5"}
    first = start_service("alerts", env, tmp_path)
    second = start_service("alerts", env, tmp_path)
    try:
        await wait_indexed(redis_client, topics.prefix, everyone)
        assert await twilio.wait_for_async(lambda _: len(twilio.messages) >= 3, 60), first.log()[
            -3000:
        ]
        # many more rounds of both processes
        await asyncio.sleep(4.0)
        bodies = {m.phone: [s.body for s in twilio.to(m.phone or "")] for m in everyone}
        assert len(twilio.messages) == 3, bodies
        assert bodies[arta.phone] == [
            f"MUSTER: la tua qualifica Primo soccorso scade il {soon:%d/%m}. "
            "Rinnovala con la tua sezione."
        ]
        assert len(bodies[besnik.phone]) == 1 and "Search and rescue" in bodies[besnik.phone][0]
        assert len(bodies[claimed.phone]) == 1 and "Conducteur" in bodies[claimed.phone][0]
        assert bodies[suspended.phone] == [] and bodies[opted_out.phone] == []
        async with admin_engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT code, status, possible_duplicate "
                        f'FROM "{schema}".qualification_reminders ORDER BY code'
                    )
                )
            ).all()
        # the opted-out number's reminder is skipped; a suspended member's is never written
        assert sorted((r.code, r.status) for r in rows) == [
            ("CPR", "skipped"),
            ("DRIVER", "sent"),
            ("FIRST_AID", "sent"),
            ("SAR", "sent"),
        ]
        # the reclaimed one is flagged: the dead process may have sent it already
        assert [r.possible_duplicate for r in rows if r.code == "DRIVER"] == [True]
    finally:
        first.stop()
        second.stop()
