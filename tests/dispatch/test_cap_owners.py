"""Who may follow up a CAP alert (issue 10, defect 5) and one emergency per CAP alert
(defect 15): a `<sender>` is text anyone can copy, so Update and Cancel are bound to the
account that declared the alert (or a coordinator of the section, or an admin); an Update
that grows the area meets the two-person rule; identical Alerts posted at the same time
declare one emergency. Through the real dispatch process."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from services.dispatch.cap import may_follow_up
from shared.auth import Principal
from shared.events.topics import EMERGENCIES
from tests.conftest import Topics
from tests.dispatch.conftest import OTHER_SECTION, SECTION, Staff, StartDispatch
from tests.dispatch.test_cap import incoming
from tests.support.kafka import read_events
from tests.support.processes import ServiceProcess
from tests.support.tokens import bearer

ORIGINAL = "prefecture.fier@example.al,PREF-FIER-2026-001,2026-11-23T10:00:00+01:00"
CAP = {"Content-Type": "application/cap+xml"}


def test_only_the_declaring_account_or_those_who_run_the_section_follow_up() -> None:
    declarer = "acct-prefecture"
    section = "AL"
    cases = [
        (Principal(declarer, "", "authority", frozenset({"AL"})), True),
        (Principal("acct-police", "", "authority", frozenset({"AL"})), False),
        (Principal("acct-police", "", "authority", frozenset({"AL", "XK"})), False),
        (Principal("acct-coordinator", "", "coordinator", frozenset({"AL"})), True),
        (Principal("acct-coordinator", "", "coordinator", frozenset({"XK"})), False),
        (Principal("acct-admin", "", "admin", frozenset()), True),
    ]
    for principal, allowed in cases:
        assert may_follow_up(principal, declarer, section) is allowed, principal


async def test_another_authority_cannot_cancel_or_move_an_alert_by_copying_its_sender(
    start_dispatch: StartDispatch, staff: Staff
) -> None:
    """Fails before the fix: a second authority of the section, copying the prefecture's
    <sender>, cancelled the prefecture's emergency (200) and could move its area."""
    dispatch = start_dispatch()
    prefecture = bearer(staff.key.token("authority", [SECTION], subject="acct-prefecture"))
    impostor = bearer(staff.key.token("authority", [SECTION], subject="acct-impostor"))
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        declared = await client.post(
            "/emergencies/cap", content=incoming(), headers={**prefecture, **CAP},
            params={"section": SECTION},
        )  # fmt: skip
        assert declared.status_code == 201, declared.text
        emergency = declared.json()
        path = f"/emergencies/{emergency['id']}"
        approved = await client.post(
            f"{path}/approve", json={"version": emergency["version"]},
            headers=staff.second_coordinator(),
        )  # fmt: skip
        assert approved.json()["status"] == "active"

        cancel = incoming("Cancel", identifier="FAKE-CANCEL", references=ORIGINAL)
        refused = await client.post("/emergencies/cap", content=cancel, headers={**impostor, **CAP})
        assert refused.status_code == 403, refused.text
        assert "another account" in refused.json()["detail"]
        moved = await client.post(
            "/emergencies/cap",
            content=incoming("Update", identifier="FAKE-MOVE", references=ORIGINAL,
                             area="<circle>41.3275,19.8187 2</circle>"),
            headers={**impostor, **CAP},
        )  # fmt: skip
        assert moved.status_code == 403, moved.text
        # resending the original Alert does not hand the emergency to the impostor either
        resent = await client.post(
            "/emergencies/cap", content=incoming(), headers={**impostor, **CAP},
            params={"section": SECTION},
        )  # fmt: skip
        assert resent.status_code == 403, resent.text
        intact = await client.get(path, headers=staff.coordinator())
        assert intact.json()["status"] == "active"
        assert intact.json()["area"] == {"lat": 40.7239, "lon": 19.5561, "radius_m": 2500}

        # the prefecture itself may update within what was approved, and cancel
        update = await client.post(
            "/emergencies/cap",
            content=incoming("Update", identifier="PREF-U1", references=ORIGINAL,
                             area="<circle>40.7239,19.5561 3</circle>"),
            headers={**prefecture, **CAP},
        )  # fmt: skip
        assert update.status_code == 200, update.text
        assert update.json()["area"]["radius_m"] == 3000
        # growing past the two-person threshold from CAP meets the rule like any change
        grow = await client.post(
            "/emergencies/cap",
            content=incoming("Update", identifier="PREF-U2", references=ORIGINAL,
                             area="<circle>40.7239,19.5561 30</circle>"),
            headers={**prefecture, **CAP},
        )  # fmt: skip
        assert grow.status_code == 403, grow.text
        assert (await client.get(path, headers=staff.coordinator())).json()["area"][
            "radius_m"
        ] == 3000
        cancelled = await client.post(
            "/emergencies/cap", content=cancel, headers={**prefecture, **CAP}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "closed"


async def test_an_authority_of_another_section_learns_nothing(
    dispatch: ServiceProcess, staff: Staff
) -> None:
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        declared = await client.post(
            "/emergencies/cap", content=incoming(), headers={**staff.coordinator(), **CAP},
            params={"section": SECTION},
        )  # fmt: skip
        assert declared.status_code == 201, declared.text
        cancel = incoming("Cancel", identifier="X-CANCEL", references=ORIGINAL)
        other = await client.post(
            "/emergencies/cap", content=cancel,
            headers={**staff.authority(OTHER_SECTION), **CAP},
        )  # fmt: skip
        assert other.status_code == 404


async def test_identical_alerts_posted_at_once_declare_one_emergency(
    dispatch: ServiceProcess, staff: Staff, topics: Topics
) -> None:
    """Fails before the fix: each of the concurrent requests found no emergency for the
    alert and declared its own, so members were alerted several times."""
    identifier = f"PREF-RACE-{uuid.uuid4()}"
    headers = {**staff.coordinator(), **CAP}
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=60) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/emergencies/cap",
                    content=incoming(identifier=identifier),
                    headers=headers,
                    params={"section": SECTION},
                )
                for _ in range(8)
            )
        )
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    envelopes = await read_events(topics.bootstrap, [topics(EMERGENCIES)], count=1, settle_s=1.5)
    declared = [e for e in envelopes if e.type == "muster.emergency.declared.v1"]
    assert [e.subject for e in declared] == [answers[0].json()["id"]]
