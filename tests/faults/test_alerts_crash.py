"""SIGKILL of the alerts service in the middle of a 2,000-member fan-out."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.events.alerts import AlertSent
from shared.events.catalog import parse_data
from shared.events.topics import ALERTS
from tests.faults.conftest import SELECTED, FaultPlatform, metric

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

#: the alert in the member's language (sq): the reply instructions
ALERT_WORDS = "Pergjigju PO"


async def test_sigkill_alerts_mid_fan_out(fault_platform: FaultPlatform) -> None:
    """Alerts dies (SIGKILL, no shutdown) after a fifth of the SMS went out, and is
    started again.

    Guaranteed: every selected member gets the alert; a member gets it twice only where
    the provider took a message the dead process had not marked sent, and each such
    extra copy is counted in `muster_alerts_possible_duplicates_total` (and flagged on
    its row), so the count is an upper bound of the duplicates. Every alert is announced
    (`alert.sent` on Kafka, which the board reads).
    What the user sees: the SMS stop while the process is down (plus
    ALERTS_SENDER_DEAD_AFTER_S before the dead sender's rows are taken over), then
    resume; a few members may get the same alert twice.
    """
    p = fault_platform
    centre = p.new_area()
    seeded = await p.seed_members(SELECTED, centre)
    p.step("2,000 members indexed")
    emergency = await p.declare(centre, title="Flooding: alerts crash")

    async def alerted() -> int:
        return sum(1 for sms in p.alert_sms(seeded).values() if sms)

    await p.eventually(
        alerted, lambda n: n >= SELECTED // 5, "a fifth alerted", timeout_s=90, every_s=0.05
    )
    p.alerts.kill()
    at_kill = await alerted()
    p.step(f"alerts killed after {at_kill} members were alerted")
    assert at_kill < SELECTED, "the fan-out finished before the kill: nothing was tested"

    await p.start("alerts")
    p.step("alerts started again")
    await p.eventually(alerted, lambda n: n == SELECTED, "every member alerted", timeout_s=150)
    p.step("every member alerted")
    schema = p.envs["alerts"]["MUSTER_DB_SCHEMA"]
    engine = create_async_engine(p.servers.postgres.url, pool_size=1)
    emergency_rows = (
        f'FROM "{schema}".outbound_messages m JOIN "{schema}".alerts a ON a.id = m.alert_id '
        f"WHERE a.emergency_id = '{emergency['id']}'"
    )
    try:

        async def unsettled() -> int:
            async with engine.connect() as conn:
                query = f"SELECT count(*) {emergency_rows} AND m.status <> 'sent'"
                return int((await conn.execute(text(query))).scalar_one())

        await p.eventually(unsettled, lambda n: n == 0, "every message marked sent", timeout_s=60)
        async with engine.connect() as conn:
            flagged = (
                await conn.execute(text(f"SELECT count(*) {emergency_rows} AND possible_duplicate"))
            ).scalar_one()
            recorded = (await conn.execute(text(f"SELECT count(*) {emergency_rows}"))).scalar_one()
    finally:
        await engine.dispose()
    await asyncio.sleep(1.0)  # a late copy would reach the provider now
    received = p.alert_sms(seeded)
    # the restarted process counts each resend of a row the dead one left 'sending'
    counted = await metric(p.alerts, "muster_alerts_possible_duplicates_total")
    extra = sum(len(sms) - 1 for sms in received.values())
    p.step(f"extra copies {extra}; counted {counted}; flagged {flagged}")

    assert recorded == SELECTED
    assert all(sms for sms in received.values()), "a selected member got no alert"
    assert all(ALERT_WORDS in s.body for sms in received.values() for s in sms)
    assert extra <= counted, f"{extra} duplicate SMS but only {counted} counted"
    assert counted <= flagged
    assert counted > 0, "the kill left no message in flight: the window was not tested"

    # every alert was announced: the board and the summaries are built from these
    events = await p.events(ALERTS, emergency_id=emergency["id"])
    announced = [parse_data(e) for e in events]
    sent = {a.member_id for a in announced if isinstance(a, AlertSent)}
    p.step(f"{len(events)} alert events on Kafka")
    assert sent == {m.member_id for m in seeded}
