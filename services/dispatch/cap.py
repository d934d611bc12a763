"""OASIS CAP 1.2 in and out (pure: XML text in, values out, and back).

Out: an emergency as a CAP 1.2 `alert` (status `Exercise` for drills, `Actual`
otherwise; `Alert`, then `Update` after a change, `Cancel` once closed, each later one
referencing the first). In: an authority's CAP alert parsed with defusedxml (no
entities, no external references) into the values of a declaration, an update or a
cancellation; anything else is a `CapError` saying what is wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from services.dispatch.schemas import MAX_POLYGON_POSITIONS
from shared.auth import Principal

NS = "urn:oasis:names:tc:emergency:cap:1.2"
_Q = f"{{{NS}}}"
CATEGORIES = (
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env",
    "Transport", "Infra", "CBRNE", "Other",
)  # fmt: skip
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
MSG_TYPES = ("Alert", "Update", "Cancel", "Ack", "Error")
STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
#: parameters Muster reads from an incoming alert's <info>
PARAM_SECTION = "muster:section"
PARAM_MEMBERS_NEEDED = "muster:members_needed"
PARAM_QUALIFICATIONS = "muster:qualifications"
_CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")


def may_follow_up(principal: Principal, created_by: str, section: str) -> bool:
    """Whether `principal` may resend, update or cancel a CAP alert that `created_by`
    declared for an emergency of `section`. A `<sender>` is text anyone can copy, so the
    account decides: the account that declared it; or an admin or a coordinator of the
    section, who may change and close the emergency through the API anyway (with the same
    two-person rule). Another authority, even of the same section, may not."""
    return principal.account_id == created_by or (
        principal.is_admin or (principal.role == "coordinator" and section in principal.sections)
    )


class CapError(ValueError):
    """The document is not a CAP 1.2 alert Muster can act on; the message says why."""


def cap_time(value: datetime) -> str:
    """CAP's dateTime: explicit offset, no fractions, no `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def identifier(emergency_id: Any, version: int = 1) -> str:
    base = f"urn:uuid:{emergency_id}"
    return base if version <= 1 else f"{base}:v{version}"


def _text(parent: Element, name: str, value: str) -> Element:
    child = SubElement(parent, name)
    child.text = value
    return child


def render(emergency: dict[str, Any], *, sender: str, now: datetime | None = None) -> bytes:
    """A CAP 1.2 alert for an emergency (a mapping with the emergency row's fields)."""
    first_sent = emergency.get("declared_at") or emergency["created_at"]
    closed = emergency["status"] == "closed"
    version = int(emergency.get("version") or 1)
    msg_type = "Cancel" if closed else ("Update" if version > 1 else "Alert")
    alert = Element("alert", {"xmlns": NS})
    _text(alert, "identifier", identifier(emergency["id"], version if msg_type != "Alert" else 1))
    _text(alert, "sender", sender)
    sent = emergency.get("updated_at") if msg_type != "Alert" else first_sent
    _text(alert, "sent", cap_time(sent or now or datetime.now(UTC)))
    _text(alert, "status", "Exercise" if emergency["drill"] else "Actual")
    _text(alert, "msgType", msg_type)
    _text(alert, "scope", "Restricted")
    _text(alert, "restriction", "Muster members and the authorities of the section")
    if emergency["drill"]:
        _text(alert, "note", "Exercise: a Muster drill, not a real emergency")
    if msg_type != "Alert":
        _text(alert, "references", f"{sender},{identifier(emergency['id'])},{cap_time(first_sent)}")
    info = SubElement(alert, "info")
    languages = emergency.get("languages") or []
    _text(info, "language", languages[0] if languages else "en")
    _text(info, "category", emergency["category"])
    _text(info, "event", emergency["title"])
    _text(info, "urgency", emergency["urgency"])
    _text(info, "severity", emergency["severity"])
    _text(info, "certainty", "Observed")
    _text(info, "senderName", f"Muster section {emergency['section']}")
    _text(info, "headline", emergency["title"][:160])
    if emergency.get("description"):
        _text(info, "description", emergency["description"])
    for name, value in (
        (PARAM_SECTION, emergency["section"]),
        (PARAM_MEMBERS_NEEDED, str(emergency["members_needed"])),
        (PARAM_QUALIFICATIONS, ",".join(emergency.get("required_qualifications") or [])),
    ):
        parameter = SubElement(info, "parameter")
        _text(parameter, "valueName", name)
        _text(parameter, "value", value)
    area = SubElement(info, "area")
    _text(area, "areaDesc", emergency["title"])
    shape = emergency["area"]
    if shape.get("polygon"):
        ring = shape["polygon"]["coordinates"][0]
        _text(area, "polygon", " ".join(f"{lat},{lon}" for lon, lat, *_ in ring))
    else:
        _text(area, "circle", f"{shape['lat']},{shape['lon']} {shape['radius_m'] / 1000:g}")
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(alert, encoding="unicode").encode()
    )


@dataclass(frozen=True)
class Reference:
    sender: str
    identifier: str
    sent: str


@dataclass(frozen=True)
class CapAlert:
    identifier: str
    sender: str
    sent: str
    status: str
    msg_type: str
    references: tuple[Reference, ...] = ()
    language: str | None = None
    category: str | None = None
    event: str | None = None
    headline: str | None = None
    description: str | None = None
    urgency: str | None = None
    severity: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    area: dict[str, Any] | None = None

    @property
    def drill(self) -> bool:
        return self.status == "Exercise"

    def declaration(self) -> dict[str, Any]:
        """The body of a POST /emergencies built from this alert (section and
        members_needed filled in by the caller when the alert does not carry them)."""
        title = (self.headline or self.event or "").strip()
        body: dict[str, Any] = {
            "title": title,
            "description": self.description or "",
            "category": self.category,
            "severity": self.severity,
            "urgency": self.urgency,
            "drill": self.drill,
            "area": self.area,
        }
        if self.language:
            body["languages"] = [self.language.split("-")[0].lower()]
        if self.parameters.get(PARAM_SECTION):
            body["section"] = self.parameters[PARAM_SECTION]
        if self.parameters.get(PARAM_MEMBERS_NEEDED):
            body["members_needed"] = self.parameters[PARAM_MEMBERS_NEEDED]
        if self.parameters.get(PARAM_QUALIFICATIONS):
            body["required_qualifications"] = [
                q.strip() for q in self.parameters[PARAM_QUALIFICATIONS].split(",") if q.strip()
            ]
        return body


def _child(parent: Element, name: str) -> str | None:
    element = parent.find(_Q + name)
    if element is None or element.text is None:
        return None
    return element.text.strip()


def _required(parent: Element, name: str, where: str, problems: list[str]) -> str:
    value = _child(parent, name)
    if not value:
        problems.append(f"{where}<{name}> is missing")
        return ""
    return value


def _circle(text: str) -> dict[str, Any]:
    match = re.fullmatch(r"\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s+([\d.]+)\s*", text)
    if not match:
        raise CapError(f"info/area/circle {text!r}: expected 'lat,lon radius_km'")
    try:
        lat, lon, km = (float(g) for g in match.groups())
    except ValueError:  # "1.2.3" or "." match the pattern
        raise CapError(f"info/area/circle {text[:60]!r}: not numbers") from None
    if not all(math.isfinite(v) for v in (lat, lon, km * 1000)):
        raise CapError(f"info/area/circle {text[:60]!r}: numbers out of range")
    return {"lat": lat, "lon": lon, "radius_m": round(km * 1000)}


def _polygon(text: str) -> dict[str, Any]:
    """CAP's "lat,lon lat,lon ..." as a GeoJSON Polygon; the ring is then checked and, when
    large, simplified like any polygon (`schemas.check_polygon`)."""
    pairs = text.split()
    if len(pairs) > MAX_POLYGON_POSITIONS:
        raise CapError(
            f"info/area/polygon has {len(pairs)} points; at most {MAX_POLYGON_POSITIONS}: "
            "simplify the area before sending it"
        )
    ring: list[list[float]] = []
    for pair in pairs:
        try:
            lat, lon = (float(v) for v in pair.split(","))
        except ValueError:
            raise CapError(f"info/area/polygon: {pair[:40]!r} is not a 'lat,lon' pair") from None
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise CapError(f"info/area/polygon: {pair[:40]!r} is not a 'lat,lon' pair")
        ring.append([lon, lat])
    return {"polygon": {"type": "Polygon", "coordinates": [ring]}}


def parse(document: bytes) -> CapAlert:
    """Read a CAP 1.2 alert; raise CapError listing what is wrong."""
    try:
        root = SafeET.fromstring(document, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise CapError(f"forbidden XML construct ({type(exc).__name__}): send plain CAP") from exc
    except SafeET.ParseError as exc:
        raise CapError(f"not well-formed XML: {exc}") from exc
    except LookupError as exc:  # an encoding declaration Python does not know
        raise CapError(f"unreadable XML ({exc}): send CAP in UTF-8") from exc
    if root.tag != _Q + "alert":
        raise CapError(
            f"the root element is {root.tag!r}; expected <alert> in the CAP 1.2 namespace {NS}"
        )
    problems: list[str] = []
    ident = _required(root, "identifier", "", problems)
    sender = _required(root, "sender", "", problems)
    sent = _required(root, "sent", "", problems)
    status = _required(root, "status", "", problems)
    msg_type = _required(root, "msgType", "", problems)
    _required(root, "scope", "", problems)
    if sent and not _CAP_TIME.match(sent):
        problems.append(f"<sent> {sent!r} is not a CAP dateTime like 2026-11-23T10:00:00+01:00")
    if status and status not in STATUSES:
        problems.append(f"<status> {status!r} is not one of {', '.join(STATUSES)}")
    elif status and status not in ("Actual", "Exercise"):
        problems.append(f"<status> {status}: only Actual and Exercise alerts are acted on")
    if msg_type and msg_type not in MSG_TYPES:
        problems.append(f"<msgType> {msg_type!r} is not one of {', '.join(MSG_TYPES)}")
    elif msg_type in ("Ack", "Error"):
        problems.append(f"<msgType> {msg_type}: only Alert, Update and Cancel are acted on")
    references: list[Reference] = []
    for item in (_child(root, "references") or "").split():
        parts = item.split(",")
        if len(parts) != 3:
            problems.append(f"<references> entry {item!r} is not 'sender,identifier,sent'")
            continue
        references.append(Reference(*parts))
    if msg_type in ("Update", "Cancel") and not references:
        problems.append(f"<references> is required for a {msg_type}: name the earlier alert")
    info = root.find(_Q + "info")
    values: dict[str, Any] = {}
    if info is None:
        if msg_type != "Cancel":
            problems.append("<info> is missing: an Alert or Update needs one")
    else:
        categories = [c.text.strip() for c in info.findall(_Q + "category") if c.text]
        known = [c for c in categories if c in CATEGORIES]
        if not known:
            problems.append(f"info/<category> must be one of {', '.join(CATEGORIES)}")
        for name, allowed in (("urgency", URGENCIES), ("severity", SEVERITIES)):
            value = _required(info, name, "info/", problems)
            if value and value not in allowed:
                problems.append(f"info/<{name}> {value!r} is not one of {', '.join(allowed)}")
        _required(info, "event", "info/", problems)
        _required(info, "certainty", "info/", problems)
        parameters: dict[str, str] = {}
        for parameter in info.findall(_Q + "parameter"):
            value_name = _child(parameter, "valueName")
            if value_name:
                parameters[value_name] = _child(parameter, "value") or ""
        area: dict[str, Any] | None = None
        area_element = info.find(_Q + "area")
        if area_element is not None:
            circle, polygon = _child(area_element, "circle"), _child(area_element, "polygon")
            try:
                if polygon:
                    area = _polygon(polygon)
                elif circle:
                    area = _circle(circle)
            except CapError as exc:
                problems.append(str(exc))
        if area is None and msg_type == "Alert" and not any("area" in p for p in problems):
            problems.append("info/<area> needs a <circle> or a <polygon>")
        values = {
            "language": _child(info, "language"),
            "category": known[0] if known else None,
            "event": _child(info, "event"),
            "headline": _child(info, "headline"),
            "description": _child(info, "description"),
            "urgency": _child(info, "urgency"),
            "severity": _child(info, "severity"),
            "parameters": parameters,
            "area": area,
        }
    if problems:
        raise CapError("; ".join(problems))
    return CapAlert(
        identifier=ident, sender=sender, sent=sent, status=status, msg_type=msg_type,
        references=tuple(references), **values,
    )  # fmt: skip
