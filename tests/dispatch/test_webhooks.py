"""Authority webhooks: a receiver run by the test verifies each signed summary, answers
503 for a while and still receives every summary it missed; a receiver that never
recovers gets its subscription paused. With the default settings, URLs of loopback,
private and link-local addresses are refused and never POSTed to."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import uuid

import httpx
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.events.topics import ALERTS, AVAILABILITY, RESPONSES
from tests.conftest import Topics
from tests.dispatch.conftest import (
    OTHER_SECTION,
    SECTION,
    Script,
    Staff,
    StartDispatch,
    emergency_body,
)
from tests.shared.flow import wait_for
from tests.support.kafka import publish, read_events
from tests.support.processes import free_port

SECRET = "s3cret-for-the-prefecture-0123456789"


class Receiver:
    """An authority's endpoint: 503 for the first `failures` calls, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.hits = 0
        self.accepted: dict[str, dict] = {}
        self.bad_signatures = 0
        self.bodies: list[str] = []

    async def summary(self, request: Request) -> Response:
        self.hits += 1
        body = (await request.body()).decode()
        timestamp = request.headers["X-Muster-Timestamp"]
        expected = (
            "sha256="
            + hmac.new(SECRET.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected, request.headers["X-Muster-Signature"]):
            self.bad_signatures += 1
            return Response(status_code=401)
        self.calls += 1
        self.bodies.append(body)
        if self.calls <= self.failures:
            return Response(status_code=503)
        self.accepted[request.headers["X-Muster-Event-Id"]] = json.loads(body)
        return Response(status_code=204)

    async def down(self, request: Request) -> Response:
        return Response(status_code=503)


@contextlib.asynccontextmanager
async def serving(receiver: Receiver):  # type: ignore[no-untyped-def]
    app = Starlette(
        routes=[
            Route("/summaries", receiver.summary, methods=["POST"]),
            Route("/down", receiver.down, methods=["POST"]),
        ]
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_signed_summaries_retried_until_received_and_paused_when_failing(
    start_dispatch: StartDispatch, staff: Staff, topics: Topics
) -> None:
    dispatch = start_dispatch(
        DISPATCH_WEBHOOK_ALLOW_PRIVATE="true",  # the receiver listens on 127.0.0.1
        DISPATCH_WEBHOOK_RETRY_BASE_S="0.2",
        DISPATCH_WEBHOOK_RETRY_MAX_S="1",
        DISPATCH_WEBHOOK_MAX_FAILURES="5",
        DISPATCH_SUMMARY_MIN_INTERVAL_S="0.3",
    )
    receiver = Receiver(failures=3)
    # one authority account throughout: an authority manages only the webhooks it created
    authority = staff.authority()
    async with serving(receiver) as base, httpx.AsyncClient(base_url=dispatch.url) as client:
        body = {"section": SECTION, "url": f"{base}/summaries", "secret": SECRET}
        assert (
            await client.post("/subscriptions", json=body, headers=staff.coordinator())
        ).status_code == 403
        assert (
            await client.post("/subscriptions", json=body, headers=staff.authority(OTHER_SECTION))
        ).status_code == 403
        short = {**body, "secret": "short"}
        assert (
            await client.post("/subscriptions", json=short, headers=authority)
        ).status_code == 422
        created = await client.post("/subscriptions", json=body, headers=authority)
        assert created.status_code == 201, created.text
        assert "secret" not in created.json()
        failing = await client.post(
            "/subscriptions", json={**body, "url": f"{base}/down"}, headers=authority
        )
        failing_id = failing.json()["id"]

        emergency = await client.post(
            "/emergencies", json=emergency_body(members_needed=1), headers=staff.coordinator()
        )
        emergency_id = emergency.json()["id"]
        script = Script(uuid.UUID(emergency_id))
        members = [uuid.uuid4() for _ in range(3)]
        # several board changes, spaced so that each gives its own summary
        steps = [
            (ALERTS, [script.sent(m, 0) for m in members]),
            (RESPONSES, [script.answer(members[0], "accepted", 10, eta=12)]),
            (RESPONSES, [script.answer(members[1], "declined", 11)]),
            (RESPONSES, [script.answer(members[2], "accepted", 12, eta=25)]),
        ]
        for topic, events in steps:
            await publish(topics.bootstrap, topics(topic), events)
            await asyncio.sleep(0.8)

        async def all_published() -> list[str]:
            envelopes = await read_events(
                topics.bootstrap, [topics(AVAILABILITY)], count=1, timeout_s=3
            )
            return [e.id for e in envelopes if e.subject == emergency_id]

        async def received_everything() -> bool:
            published = await all_published()
            return len(published) >= 2 and set(published) == set(receiver.accepted)

        assert await wait_for(received_everything, timeout_s=30), (
            await all_published(),
            list(receiver.accepted),
        )
        assert receiver.calls > len(receiver.accepted), "some deliveries were answered 503"
        assert receiver.bad_signatures == 0
        final = max(receiver.accepted.values(), key=lambda s: s["updated_at"])
        assert final["counts"]["accepted"] == 1 and final["counts"]["standby"] == 1
        for text in receiver.bodies:
            assert all(str(m) not in text for m in members)

        async def paused() -> bool:
            listing = await client.get("/subscriptions", headers=staff.admin())
            return any(s["id"] == failing_id and s["paused"] for s in listing.json())

        assert await wait_for(paused, timeout_s=20)
        listing = (await client.get("/subscriptions", headers=authority)).json()
        mine = {s["id"]: s for s in listing}
        assert mine[created.json()["id"]]["paused"] is False
        assert mine[failing_id]["pending_deliveries"] >= 1
        assert mine[failing_id]["consecutive_failures"] >= 5
        resumed = await client.post(f"/subscriptions/{failing_id}/resume", headers=authority)
        assert resumed.json()["paused"] is False


async def test_private_addresses_refused_at_creation_and_at_delivery(
    start_dispatch: StartDispatch,
    staff: Staff,
    topics: Topics,
    dispatch_env: dict[str, str],
    admin_engine: AsyncEngine,
) -> None:
    dispatch = start_dispatch(DISPATCH_WEBHOOK_RETRY_BASE_S="0.2", DISPATCH_WEBHOOK_RETRY_MAX_S="1")
    receiver = Receiver(failures=0)
    async with serving(receiver) as base, httpx.AsyncClient(base_url=dispatch.url) as client:
        port = base.rsplit(":", 1)[1]
        for url in [
            f"{base}/summaries",
            f"http://10.1.2.3:{port}/summaries",
            "http://169.254.169.254/latest/meta-data/",
            f"http://[::1]:{port}/summaries",
            f"http://[::ffff:127.0.0.1]:{port}/summaries",
            f"http://localhost:{port}/summaries",
        ]:
            refused = await client.post(
                "/subscriptions",
                json={"section": SECTION, "url": url, "secret": SECRET},
                headers=staff.authority(),
            )
            assert refused.status_code == 422, (url, refused.text)
            assert refused.json()["detail"][0]["loc"] == ["body", "url"], refused.text
        assert (await client.get("/subscriptions", headers=staff.admin())).json() == []

        # a subscription whose host resolved to a public address when it was made and
        # now resolves to loopback (stored directly: the API would refuse it today)
        subscription_id = uuid.uuid4()
        schema = dispatch_env["MUSTER_DB_SCHEMA"]
        async with admin_engine.begin() as conn:
            await conn.execute(
                text(
                    f'INSERT INTO "{schema}".subscriptions (id, section, url, secret, created_by)'
                    " VALUES (:id, :section, :url, :secret, 'test')"
                ),
                {"id": subscription_id, "section": SECTION,
                 "url": f"http://localhost:{port}/summaries", "secret": SECRET},
            )  # fmt: skip

        emergency = await client.post(
            "/emergencies", json=emergency_body(members_needed=1), headers=staff.coordinator()
        )
        script = Script(uuid.UUID(emergency.json()["id"]))
        await publish(topics.bootstrap, topics(ALERTS), [script.sent(uuid.uuid4(), 0)])

        failed: dict = {}

        async def failed_twice() -> bool:
            listing = (await client.get("/subscriptions", headers=staff.admin())).json()
            failed.update(next(s for s in listing if s["id"] == str(subscription_id)))
            return bool(failed["consecutive_failures"] >= 2)

        assert await wait_for(failed_twice, timeout_s=30), failed
        assert "refused" in failed["last_error"] and "loopback" in failed["last_error"]
        assert failed["pending_deliveries"] >= 1
        assert receiver.hits == 0
