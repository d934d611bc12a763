"""The after-action report of an emergency driven through the whole flow (issue 12):
members, alerts and dispatch as real processes on the real local Kafka / PostgreSQL /
Redis (the platform of test_emergency_flow.py), SMS through the local Twilio-compatible
server.

Five members: four in the first wave's circle, one only in the second wave's. One
accepts by SMS and reports on scene by SMS, one accepts and reports on scene on the
answer page, one declines by SMS, one's number is refused by the provider; the
coordinator sends the second wave by hand; the emergency closes. The report has that
timeline and those figures in JSON, CSV, the printable page and the PDF; the
authority's version of each holds no name, phone or member id, and small counts are
suppressed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import uuid
import zlib
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from tests.e2e.test_emergency_flow import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    CENTRE,
    COORDINATOR_EMAIL,
    SECTION,
    STAFF_PASSWORD,
    TIMEZONE,
    Person,
    Platform,
    Registered,
    bearer,
    link_token,
    login,
    member_body,
    platform,
    signed,
)

__all__ = ["platform"]  # the fixture, imported for this module's tests

AUTHORITY_EMAIL = "prefecture.fier@example.org"
TITLE = "Landslide, Fier road"
RADIUS_M = 3000
#: k of the authority's version: 2, so that some counts of five members show and some don't
MIN_COUNT = 2
CAST = [
    Person("arta", "Arta Hoxha", "sq", 200, True),
    Person("john", "John Whitfield", "en", 400, True),
    Person("camille", "Camille Durand", "fr", 600, True),
    Person("besnik", "Besnik Krasniqi", "sq", 800, True),
    # outside the first circle (3 km), inside the second wave's (6 km)
    Person("dritan", "Dritan Leka", "sq", 4500, True),
]


@pytest.fixture
def dispatch_env() -> dict[str, str]:
    return {"DISPATCH_REPORT_MIN_COUNT": str(MIN_COUNT)}


def pdf_pages(data: bytes) -> int:
    """Page objects in a PDF, looked for in its compressed object streams too (WeasyPrint
    writes them there)."""
    bodies = [data]
    for found in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        with contextlib.suppress(zlib.error):
            bodies.append(zlib.decompress(found.group(1)))
    return sum(len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", body)) for body in bodies)


def at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


async def test_after_action_report_of_a_whole_emergency(
    platform: Platform, redis_client: redis.Redis
) -> None:
    p = platform
    twilio = p.twilio
    members_http = httpx.AsyncClient(base_url=p.members.url, timeout=30)
    alerts_http = httpx.AsyncClient(base_url=p.alerts.url, timeout=30)
    dispatch_http = httpx.AsyncClient(base_url=p.dispatch.url, timeout=120)
    try:
        admin = bearer(await login(members_http, ADMIN_EMAIL, ADMIN_PASSWORD))
        section = {"code": SECTION, "name": "Section Albania", "country": "AL",
                   "timezone": TIMEZONE, "language": "sq"}  # fmt: skip
        created = await members_http.post("/sections", json=section, headers=admin)
        p.check(created.status_code == 201, f"POST /sections: {created.text}", "members")
        for email, role in ((COORDINATOR_EMAIL, "coordinator"), (AUTHORITY_EMAIL, "authority")):
            account = {"email": email, "password": STAFF_PASSWORD, "role": role,
                       "sections": [SECTION]}  # fmt: skip
            created = await members_http.post("/accounts", json=account, headers=admin)
            p.check(created.status_code == 201, f"POST /accounts: {created.text}", "members")
        coordinator = bearer(await login(members_http, COORDINATOR_EMAIL, STAFF_PASSWORD))
        authority = bearer(await login(members_http, AUTHORITY_EMAIL, STAFF_PASSWORD))

        phone_base = uuid.uuid4().int % 9_000_000
        people: dict[str, Registered] = {}
        for i, person in enumerate(CAST):
            phone = f"+35569{phone_base + i:07d}"
            created = await members_http.post(
                "/members", json=member_body(person, phone), headers=coordinator
            )
            p.check(created.status_code == 201, f"POST /members: {created.text}", "members")
            out = created.json()
            people[person.key] = Registered(person, out["id"], out["phone"], int(out["version"]))
        arta, john, camille, besnik, dritan = (people[c.key] for c in CAST)
        twilio.reject(besnik.phone, 400)

        async def indexed() -> list[Any]:
            pipe = redis_client.pipeline(transaction=False)
            for r in people.values():
                pipe.hget(f"{p.alerts_redis_prefix}alerts:member:{r.id}", "v")
            return list(await pipe.execute())

        await p.eventually(indexed, lambda vs: all(v is not None for v in vs), "indexed", "alerts")

        declared = await dispatch_http.post(
            "/emergencies",
            headers=coordinator,
            json={
                "section": SECTION, "title": TITLE, "category": "Geo", "severity": "Severe",
                "urgency": "Immediate",
                "area": {"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": RADIUS_M},
                "required_qualifications": ["FIRST_AID"], "members_needed": 2,
            },
        )  # fmt: skip
        p.check(declared.status_code == 201, f"POST /emergencies: {declared.text}", "dispatch")
        emergency_id = declared.json()["id"]

        async def board() -> dict[str, Any]:
            got = await dispatch_http.get(f"/emergencies/{emergency_id}/board", headers=coordinator)
            p.check(got.status_code == 200, f"GET board: {got.text}", "dispatch")
            data: dict[str, Any] = got.json()
            return data

        key_of = {r.id: k for k, r in people.items()}

        def statuses(data: dict[str, Any]) -> dict[str, str]:
            return {key_of[row["member_id"]]: row["status"] for row in data["rows"]}

        async def board_shows(expected: dict[str, str], what: str) -> dict[str, Any]:
            return await p.eventually(
                board,
                lambda b: all(statuses(b).get(k) == s for k, s in expected.items()),
                what,
                "dispatch",
                "alerts",
            )

        first_wave = {"arta": "delivered", "john": "delivered", "camille": "delivered",
                      "besnik": "failed"}  # fmt: skip
        # the fake server reports delivery only when asked; sent is enough here
        await p.eventually(
            board,
            lambda b: (
                {k for k, s in statuses(b).items() if s in ("notified", "delivered")}
                | {k for k, s in statuses(b).items() if s == "failed"}
                == set(first_wave)
            ),
            "the first wave on the board (besnik's SMS refused)",
            "dispatch",
            "alerts",
        )
        escalated = await dispatch_http.post(
            f"/emergencies/{emergency_id}/escalate", headers=coordinator
        )
        p.check(escalated.status_code == 200, f"POST escalate: {escalated.text}", "dispatch")
        await p.eventually(
            board, lambda b: "dritan" in statuses(b), "the second wave reaches dritan", "alerts"
        )

        pages = {k: f"/r/{link_token(p, twilio.to(people[k].phone)[0])}" for k in ("john",)}

        async def say(who: Registered, body: str) -> None:
            params = {
                "From": who.phone,
                "To": "+15005550006",
                "Body": body,
                "MessageSid": f"SM{uuid.uuid4().hex}",
                "AccountSid": "AC" + "0" * 32,
            }
            answered = await alerts_http.post(
                "/sms/inbound", data=params, headers=signed(p, "/sms/inbound", params)
            )
            p.check(answered.status_code == 200, f"SMS {body!r}: {answered.text}", "alerts")

        async def press(who: Registered, choice: str) -> None:
            answered = await alerts_http.post(pages[who.person.key], data={"choice": choice})
            p.check(answered.status_code == 200, f"page {choice}: {answered.text}", "alerts")

        await say(arta, "PO 10")
        await board_shows({"arta": "accepted"}, "arta accepted")
        await press(john, "15")
        await say(camille, "NON")
        await board_shows({"john": "accepted", "camille": "declined"}, "john in, camille out")
        await say(arta, "MBËRRITA")
        await board_shows({"arta": "on_scene"}, "arta on scene")
        await press(john, "on_scene")
        await board_shows({"john": "on_scene"}, "john on scene")

        closed = await dispatch_http.post(
            f"/emergencies/{emergency_id}/close", headers=coordinator, json={"note": "road open"}
        )
        p.check(closed.status_code == 200, f"close: {closed.text}", "dispatch")

        # -- the coordinator's report, JSON ------------------------------------------
        got = await dispatch_http.get(f"/emergencies/{emergency_id}/report", headers=coordinator)
        p.check(got.status_code == 200, f"GET report: {got.status_code} {got.text}", "dispatch")
        report = got.json()
        p.check(report["audience"] == "coordinator", f"{report['audience']}")
        p.check(report["emergency"]["title"] == TITLE, f"{report['emergency']}")
        p.check(report["emergency"]["status"] == "closed", f"{report['emergency']}")
        turnout = report["turnout"]
        expected_turnout = {"alerted": 5, "failed": 1, "opted_out": 0, "answered": 3,
                            "accepted": 2, "declined": 1, "no_answer": 2, "on_scene": 2,
                            "en_route": 0, "released": 0, "home_safe": 0}  # fmt: skip
        p.check(
            {k: turnout[k] for k in expected_turnout} == expected_turnout,
            f"turnout: {turnout}",
            "dispatch",
        )
        p.check(report["arrived_share"] == 1.0, f"arrived share {report['arrived_share']}")
        # a refused SMS has no alert.sent, which is what carries the qualifications: besnik
        # counts in the turnout, not under FIRST_AID
        p.check(report["by_qualification"]["FIRST_AID"]["alerted"] == 4, f"{report}")
        p.check(report["by_section"][SECTION]["on_scene"] == 2, f"{report['by_section']}")
        channels = report["answers_by_channel"]
        p.check(
            channels["sms"]["accepted"] == 1 and channels["sms"]["declined"] == 1
            and channels["sms"]["status_reports"] == 1
            and channels["web"]["accepted"] == 1 and channels["web"]["status_reports"] == 1,
            f"channels: {channels}",
        )  # fmt: skip
        p.check(report["failures"]["failed"] == 1, f"failures: {report['failures']}")
        p.check(list(report["failures"]["reasons"].values()) == [1], f"{report['failures']}")

        # the timeline: milestones in order, each status change of each member
        timeline = report["timeline"]
        events = [e["event"] for e in timeline if e["event"] != "status_change"]
        p.check(
            events == ["declared", "wave", "first_sms", "wave", "first_acceptance",
                       "staffed", "first_on_scene", "closed"],
            f"milestones: {events}",
        )  # fmt: skip
        waves = [e["wave"] for e in timeline if e["event"] == "wave"]
        p.check(waves == [1, 2], f"waves: {waves}")
        changes = [(key_of[e["member_id"]], e["status"], e["channel"])
                   for e in timeline if e["event"] == "status_change"]  # fmt: skip
        p.check(
            changes == [("arta", "accepted", "sms"), ("john", "accepted", "web"),
                        ("camille", "declined", "sms"), ("arta", "on_scene", "sms"),
                        ("john", "on_scene", "web")],
            f"status changes: {changes}",
        )  # fmt: skip
        lines = {key_of[line["member_id"]]: line for line in report["responders"]}
        p.check(lines["dritan"]["wave"] == 2 and lines["arta"]["wave"] == 1, f"{lines}")
        # times measured from each member's own SMS, median and p90 of what the lines say
        to_arrival = sorted(
            (at(lines[k]["on_scene_at"]) - at(lines[k]["sent_at"])).total_seconds()
            for k in ("arta", "john")
        )
        figures = report["time_to_arrival"]
        p.check(
            figures["count"] == 2
            and abs(figures["median_s"] - sum(to_arrival) / 2) < 0.01
            and abs(figures["p90_s"] - to_arrival[1]) < 0.01,
            f"time to arrival {figures} vs {to_arrival}",
        )
        p.check(report["time_to_first_answer"]["count"] == 3, f"{report['time_to_first_answer']}")
        staff = [a["action"] for a in report["staff_actions"]]
        p.check(
            staff[0] == "declared" and "escalate_requested" in staff and staff[-1] == "closed",
            f"staff actions: {staff}",
        )
        p.check(all(a["actor"] != "dispatch" for a in report["staff_actions"]), f"{staff}")

        # -- the same, as CSV, the printable page and PDF ------------------------------
        got = await dispatch_http.get(
            f"/emergencies/{emergency_id}/report.csv", headers=coordinator
        )
        p.check(got.status_code == 200, f"GET report.csv: {got.text}", "dispatch")
        p.check(got.headers["content-type"].startswith("text/csv"), f"{got.headers}")
        table = list(csv.DictReader(io.StringIO(got.text)))
        cells = {(r["part"], r["item"], r["measure"]): r["value"] for r in table}
        for name, value in expected_turnout.items():
            p.check(cells[("turnout", "all", name)] == str(value), f"CSV turnout {name}")
        p.check(cells[("figures", "time_to_arrival", "median_s")] == str(figures["median_s"]),
                "CSV median")  # fmt: skip
        p.check(cells[("responder", dritan.id, "wave")] == "2", "CSV responder line")
        csv_events = [
            r["value"] for r in table if r["part"] == "timeline" and r["measure"] == "event"
        ]
        p.check(csv_events == [e["event"] for e in timeline], f"CSV timeline {csv_events}")

        got = await dispatch_http.get(
            f"/emergencies/{emergency_id}/report.html", headers=coordinator
        )
        p.check(got.status_code == 200, f"GET report.html: {got.text}", "dispatch")
        page = got.text
        p.check(TITLE in page and "@media print" in page, "printable page")
        p.check(page.count('src="data:image/svg+xml;base64,') == 2, "two charts drawn as SVG")
        p.check(arta.id in page and "escalate requested" in page, "responders and actions")

        got = await dispatch_http.get(
            f"/emergencies/{emergency_id}/report.pdf", headers=coordinator
        )
        p.check(got.status_code == 200, f"GET report.pdf: {got.status_code}", "dispatch")
        p.check(got.content.startswith(b"%PDF-"), "a PDF")
        p.check(pdf_pages(got.content) >= 1, "the PDF has pages")

        # -- the authority's version: counts only ------------------------------------
        private = [r.id for r in people.values()] + [r.person.full_name for r in people.values()]
        private += [r.phone for r in people.values()] + [r.phone[4:] for r in people.values()]
        private += [r.person.full_name.split()[1] for r in people.values()]
        seen: dict[str, bytes] = {}
        for suffix in ("", ".csv", ".html", ".pdf"):
            got = await dispatch_http.get(
                f"/emergencies/{emergency_id}/report{suffix}", headers=authority
            )
            p.check(got.status_code == 200, f"authority report{suffix}: {got.text[:300]}")
            seen[suffix] = got.content
            for secret in private:
                p.check(secret.encode() not in got.content, f"{secret!r} in report{suffix}")
            p.check(COORDINATOR_EMAIL.encode() not in got.content, f"staff in report{suffix}")
        public = httpx.Response(200, content=seen[""]).json()
        p.check(public["audience"] == "authority" and public["min_count"] == MIN_COUNT, "k")
        p.check(
            public["turnout"]["alerted"] == 5
            and public["turnout"]["on_scene"] == 2
            and public["turnout"]["declined"] == f"< {MIN_COUNT}"
            and public["turnout"]["failed"] == f"< {MIN_COUNT}"
            and public["turnout"]["home_safe"] == f"< {MIN_COUNT}",
            f"authority turnout: {public['turnout']}",
        )
        p.check(public["time_to_arrival"]["median_s"] == figures["median_s"], "k = 2 arrivals")
        p.check("responders" not in public, "no responder lines")
        p.check(
            all(e["event"] != "status_change" for e in public["timeline"]),
            f"timeline: {public['timeline']}",
        )
        p.check(seen[".pdf"].startswith(b"%PDF-") and pdf_pages(seen[".pdf"]) >= 1, "their PDF")
        p.check(b"Answers over time" in seen[".html"], "the authority's page has its charts")

        # an authority asking for the coordinator's version is refused; another
        # section's staff do not learn the emergency exists
        refused = await dispatch_http.get(
            f"/emergencies/{emergency_id}/report?audience=coordinator", headers=authority
        )
        p.check(refused.status_code == 403 and "audience" in refused.text, f"{refused.text}")
        bad = await dispatch_http.get(
            f"/emergencies/{emergency_id}/report?audience=everyone", headers=coordinator
        )
        p.check(bad.status_code == 422 and "audience" in bad.text, f"{bad.text}")
        other = {"code": "IT", "name": "Section Italy", "country": "IT",
                 "timezone": "Europe/Rome", "language": "it"}  # fmt: skip
        created = await members_http.post("/sections", json=other, headers=admin)
        p.check(created.status_code == 201, f"POST /sections: {created.text}", "members")
        account = {"email": "prefettura.it@example.org", "password": STAFF_PASSWORD,
                   "role": "authority", "sections": ["IT"]}  # fmt: skip
        created = await members_http.post("/accounts", json=account, headers=admin)
        p.check(created.status_code == 201, f"POST /accounts: {created.text}", "members")
        stranger = bearer(await login(members_http, account["email"], STAFF_PASSWORD))
        hidden = await dispatch_http.get(f"/emergencies/{emergency_id}/report", headers=stranger)
        p.check(hidden.status_code == 404, f"other section: {hidden.status_code}")
    finally:
        await members_http.aclose()
        await alerts_http.aclose()
        await dispatch_http.aclose()
