"""The Kafka broker gone for 10 s (and its restart) during a 2,000-member fan-out."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.faults.conftest import SELECTED, FaultPlatform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]

#: how long the broker stays stopped before it is started again (its start then adds the
#: JVM's own 10-25 s on a 2-core machine: the outage is longer than this)
DOWN_S = 10.0


async def test_kafka_broker_stopped_during_fan_out(fault_platform: FaultPlatform) -> None:
    """The suite's private broker is killed (SIGKILL: a full stop, not a pause) when a
    fifth of the members are alerted, stays down 10 s, and is started again; members
    answer by SMS before, during and after.

    Guaranteed: the fan-out does not need Kafka (the alerts are recorded, sent and their
    events wait in the outbox), answers are acknowledged during the outage (written with
    their event in one transaction), and once the broker is back every alert and every
    answer reaches dispatch: the board has a row for each of the 2,000 members and shows
    each acknowledged answer.
    What the user sees: SMS keep going out; the coordinator's board stops moving while
    the broker is away and then catches up.
    """
    p = fault_platform
    centre = p.new_area()
    seeded = await p.seed_members(SELECTED, centre)
    p.step("2,000 members indexed")
    declared = await p.declare(centre, title="Flooding: Kafka outage")

    async def alerted() -> int:
        return sum(1 for sms in p.alert_sms(seeded).values() if sms)

    acknowledged: dict[str, float] = {}  # phone → when alerts answered 200
    refused: list[tuple[int, str]] = []
    stop = asyncio.Event()
    started = time.monotonic()

    async def members_answering(client: httpx.AsyncClient) -> None:
        """Members answer as their SMS arrive (every fourth member, "PO 10")."""
        while not stop.is_set():
            waiting = [
                ph for i, (ph, sms) in enumerate(p.alert_sms(seeded).items())
                if i % 4 == 0 and sms and ph not in acknowledged
            ]  # fmt: skip
            for phone in waiting[:20]:
                form, headers = p.signed_reply(phone, "PO 10")
                response = await client.post(
                    f"{p.alerts.url}/sms/inbound", data=form, headers=headers
                )
                if response.status_code == 200:
                    acknowledged[phone] = time.monotonic() - started
                else:
                    refused.append((response.status_code, response.text[:200]))
            await asyncio.sleep(0.2)

    await p.eventually(alerted, lambda n: n >= SELECTED // 5, "a fifth alerted", timeout_s=90,
                       every_s=0.1)  # fmt: skip
    async with httpx.AsyncClient(timeout=30) as client:
        answering = asyncio.create_task(members_answering(client))
        await asyncio.sleep(1.0)
        p.servers.kafka.kill()
        down_at = time.monotonic() - started
        at_stop = await alerted()
        p.step(f"kafka stopped with {at_stop} members alerted")
        await asyncio.sleep(DOWN_S)
        during = await alerted()
        await asyncio.to_thread(p.servers.kafka.start)
        up_at = time.monotonic() - started
        p.step(f"kafka started again ({during} alerted while it was down)")
        await p.eventually(alerted, lambda n: n == SELECTED, "every member alerted", timeout_s=180)
        # every fourth member answers; wait until each of them has been acknowledged
        expected = {ph for i, ph in enumerate(p.alert_sms(seeded)) if i % 4 == 0}
        await p.eventually(
            lambda: asyncio.sleep(0, result=set(acknowledged)),
            lambda got: expected <= got,
            "every answer acknowledged",
            timeout_s=180,
        )
        stop.set()
        await answering
    answered_during = [ph for ph, at in acknowledged.items() if down_at <= at <= up_at]
    p.step(f"{len(acknowledged)} answers, {len(answered_during)} during the outage")
    assert during > at_stop, "no SMS went out while the broker was down"
    assert answered_during, "no answer was acknowledged while the broker was down"
    assert not refused, f"answers refused: {refused[:5]}"
    assert all(len(sms) == 1 for sms in p.alert_sms(seeded).values())

    # everything reaches dispatch once the broker is back
    member_of = {m.phone: str(m.member_id) for m in seeded}
    answering_members = {member_of[ph] for ph in acknowledged}

    async def board_state() -> tuple[int, int]:
        rows = await p.board(declared["id"])
        accepted = {r["member_id"] for r in rows if r["status"] == "accepted"}
        return len(rows), len(accepted & answering_members)

    await p.eventually(
        board_state,
        lambda state: state == (SELECTED, len(answering_members)),
        "every alert and answer on the board",
        timeout_s=360,
        every_s=3.0,
    )
    rows = await p.board(declared["id"])
    assert {r["member_id"] for r in rows} == set(member_of.values())
    assert {r["member_id"] for r in rows if r["status"] == "accepted"} == answering_members
    assert all(r["eta_minutes"] == 10 for r in rows if r["status"] == "accepted")
