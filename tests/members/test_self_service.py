"""Members applying what members ask for themselves (issue 11, self-service): requests on
`muster.members.requests` (alerts publishes them from SMS commands and the personal page)
change what `GET /members/{id}` returns and publish the snapshot, once per event id; a
position without consent is never stored; a request for an erased member changes nothing
and blocks nothing behind it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from services.members.self_service import requested_values
from shared.events.catalog import make_envelope
from shared.events.members import MemberSelfServiceRequested, Position, QuietHours
from shared.events.topics import MEMBERS_REQUESTS
from tests.members.conftest import MembersUnderTest, make_section, member_body, snapshots_of
from tests.support.kafka import publish

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def request(member_id: str, **changes: Any) -> MemberSelfServiceRequested:
    return MemberSelfServiceRequested(
        member_id=uuid.UUID(member_id), channel="sms", requested_at=datetime.now(UTC), **changes
    )


def test_requested_values_only_what_was_asked() -> None:
    mid = str(uuid.uuid4())
    assert requested_values(request(mid), now=NOW) == {}
    away = requested_values(
        request(mid, availability="unavailable", unavailable_until=NOW + timedelta(days=3)),
        now=NOW,
    )
    assert away == {"availability": "unavailable", "unavailable_until": NOW + timedelta(days=3)}
    # an end already past leaves nothing to be away for
    past = request(mid, availability="unavailable", unavailable_until=NOW - timedelta(hours=1))
    assert requested_values(past, now=NOW)["availability"] == "available"
    where = Position(lat=40.7, lon=19.5, source="live")
    assert requested_values(request(mid, location=where), now=NOW) == {}
    assert requested_values(request(mid, language="xx"), now=NOW) == {}
    consented = requested_values(request(mid, location=where, location_consent=True), now=NOW)
    assert consented["live_lat"] == 40.7 and consented["location_consent_at"] == NOW
    quiet_off = requested_values(request(mid, quiet_hours_off=True), now=NOW)
    assert quiet_off == {"quiet_start": None, "quiet_end": None}


async def eventually(
    probe: Callable[[], Awaitable[dict[str, Any]]],
    done: Callable[[dict[str, Any]], bool],
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        last = await probe()
        if done(last):
            return last
        assert time.monotonic() < deadline, f"not so after {timeout_s} s: {last}"
        await asyncio.sleep(0.2)


async def test_requests_change_the_member_once_each(members_service: MembersUnderTest) -> None:
    svc = members_service
    async with svc.admin() as admin:
        section = await make_section(admin)
        created = await admin.post("/members", json=member_body(section, quiet_hours=None))
        assert created.status_code == 201, created.text
        member = created.json()
        mid = member["id"]

        async def read() -> dict[str, Any]:
            response = await admin.get(f"/members/{mid}")
            assert response.status_code == 200, response.text
            return dict(response.json())

        until = datetime.now(UTC) + timedelta(days=3)
        away = make_envelope(
            request(mid, availability="unavailable", unavailable_until=until),
            source="muster.alerts",
        )
        # the same event twice (a relay re-publishing a batch): applied once
        await publish(svc.bootstrap, svc.topic(MEMBERS_REQUESTS), [away, away])
        seen = await eventually(read, lambda m: m["availability"] == "unavailable")
        assert datetime.fromisoformat(seen["unavailable_until"]) == until
        assert seen["version"] == 2

        page = request(
            mid,
            availability="available",
            quiet_hours=QuietHours(start="22:00", end="07:00"),  # type: ignore[arg-type]
            language="it",
            location=Position(lat=41.0, lon=19.8, source="live"),
            location_consent=True,
        ).model_copy(update={"channel": "web"})
        no_consent = request(mid, location=Position(lat=10.0, lon=10.0, source="live"))
        await publish(
            svc.bootstrap,
            svc.topic(MEMBERS_REQUESTS),
            [make_envelope(page, source="muster.alerts"), make_envelope(no_consent, source="x")],
        )
        seen = await eventually(read, lambda m: m["language"] == "it")
        assert seen["availability"] == "available" and seen["unavailable_until"] is None
        assert seen["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
        assert seen["location"]["live"]["lat"] == 41.0
        # the request without consent changed nothing, and no snapshot went for it
        await asyncio.sleep(1.5)
        assert (await read())["location"]["live"]["lat"] == 41.0
        snapshots = await snapshots_of(svc, mid, 3)
        assert [s["version"] for s in snapshots] == [1, 2, 3]
        assert snapshots[1]["availability"] == "unavailable"
        assert snapshots[2]["language"] == "it" and snapshots[2]["live"]["lat"] == 41.0

        # a request for a member erased meanwhile changes nothing and blocks nothing
        gone = await admin.post("/members", json=member_body(section))
        gone_id = gone.json()["id"]
        assert (await admin.delete(f"/members/{gone_id}")).status_code == 204
        await publish(
            svc.bootstrap,
            svc.topic(MEMBERS_REQUESTS),
            [
                make_envelope(request(gone_id, availability="unavailable"), source="x"),
                make_envelope(request(mid, availability="unavailable"), source="x"),
            ],
        )
        seen = await eventually(read, lambda m: m["availability"] == "unavailable")
        assert seen["unavailable_until"] is None
        assert (await admin.get(f"/members/{gone_id}")).status_code == 404
