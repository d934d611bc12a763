"""The CAP 1.2 parser with hostile input (issue 10, defect 14): random bytes, random text
in every element, garbage numbers in `<circle>` and `<polygon>`, odd encodings and the
classic XML attacks. `cap.parse` raises nothing but `CapError` (the API's 422), and what it
accepts becomes a declaration that validates or is refused with pydantic's
`ValidationError` (also a 422), never anything else. Before the fix a `<circle>` of
`1.2.3,4 5` or a 400-digit latitude raised ValueError / OverflowError: a 500."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.dispatch import cap
from services.dispatch.schemas import EmergencyCreate

FIELDS = ("identifier", "sender", "sent", "status", "msgType", "scope", "references")
INFO_FIELDS = ("language", "category", "event", "urgency", "severity", "certainty", "headline")
GOOD: dict[str, str] = {
    "identifier": "PREF-FIER-2026-001",
    "sender": "prefecture.fier@example.al",
    "sent": "2026-11-23T10:00:00+01:00",
    "status": "Actual",
    "msgType": "Alert",
    "scope": "Public",
    "references": "",
    "language": "sq-AL",
    "category": "Rescue",
    "event": "Flood",
    "urgency": "Immediate",
    "severity": "Severe",
    "certainty": "Observed",
    "headline": "Flooding, Fier centre",
    "circle": "40.7239,19.5561 2.5",
    "polygon": "",
    "members_needed": "5",
    "section": "AL",
}


def document(values: dict[str, str]) -> bytes:
    def element(name: str) -> str:
        value = values.get(name, "")
        return f"<{name}>{escape(value)}</{name}>" if value else ""

    parameters = "".join(
        f"<parameter><valueName>muster:{name}</valueName><value>{escape(values[name])}</value>"
        "</parameter>"
        for name in ("members_needed", "section")
        if values.get(name)
    )
    area = f"<area><areaDesc>x</areaDesc>{element('circle')}{element('polygon')}</area>"
    head = "".join(element(name) for name in FIELDS)
    info = "".join(element(name) for name in INFO_FIELDS)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<alert xmlns="{cap.NS}">{head}<info>{info}{parameters}{area}</info></alert>'
    ).encode("utf-8", "surrogatepass")


def outcome(data: bytes) -> str:
    """What the API would do with the body: "refused" (422) or "declared" (201); anything
    raised other than the documented errors fails the test."""
    try:
        alert = cap.parse(data)
    except cap.CapError as exc:
        assert str(exc), "a CapError must say what is wrong"
        return "refused"
    body: dict[str, Any] = alert.declaration()
    body.setdefault("section", "AL")
    body.setdefault("members_needed", 5)
    try:
        EmergencyCreate.model_validate(body)
    except ValidationError:
        return "refused"
    return "declared"


def test_the_template_itself_declares() -> None:
    assert outcome(document(GOOD)) == "declared"


xml_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=60,
)
numbers = st.from_regex(r"-?[0-9.]{0,420}", fullmatch=True) | st.sampled_from(
    ["nan", "inf", "-inf", "1e999", "9" * 400, ".", "-.", "1.2.3", "", "  ", "0x10", "١٢"]
)
circles = (
    st.builds(
        lambda lat, lon, km, sep: f"{lat}{sep}{lon} {km}",
        numbers,
        numbers,
        numbers,
        st.sampled_from([",", " , ", ";", ""]),
    )
    | xml_text
)
polygons = (
    st.lists(st.builds(lambda a, b: f"{a},{b}", numbers, numbers), max_size=6).map(" ".join)
    | xml_text
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(sorted(GOOD)), xml_text | numbers, max_size=len(GOOD)),
    circles,
    polygons,
)
def test_any_values_in_any_element_give_a_cap_error_or_a_declaration(
    values: dict[str, str], circle: str, polygon: str
) -> None:
    outcome(document({**GOOD, **values, "circle": circle, "polygon": polygon}))


@settings(max_examples=300)
@given(circles)
def test_garbage_circles_are_refused_or_finite(circle: str) -> None:
    data = document({**GOOD, "circle": circle})
    if outcome(data) == "declared":
        area = cap.parse(data).area
        assert area is not None and area["radius_m"] > 0


@pytest.mark.parametrize(
    "circle",
    ["1.2.3,4 5", "40.7,19.5 1.2.3", ".,. .", "9" * 400 + ",19.5 2", "40.7,19.5 " + "9" * 400,
     "-.,-. 5", "40.7 ,19.5 2 2", "91,19.5 2", "40.7,181 2", "40.7,19.5 0", "40.7,19.5 -2"],
)  # fmt: skip
def test_known_garbage_circles_are_refused(circle: str) -> None:
    assert outcome(document({**GOOD, "circle": circle})) == "refused"


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_give_a_cap_error(data: bytes) -> None:
    assert outcome(data) == "refused"


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_random_bytes_inside_an_element_give_a_cap_error_or_a_declaration(junk: bytes) -> None:
    data = document(GOOD).replace(b"Flooding, Fier centre", junk)
    outcome(data)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol3;</identifier></alert>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&secret;</identifier></alert>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/cap.dtd">
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier></alert>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>"""
XINCLUDE = b"""<?xml version="1.0"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2" xmlns:xi="http://www.w3.org/2001/XInclude">
<identifier><xi:include href="file:///etc/passwd" parse="text"/></identifier></alert>"""


@pytest.mark.parametrize(
    "data",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        EXTERNAL_DTD,
        PARAMETER_ENTITY,
        XINCLUDE,
        b"<" * 10_000,
        b"<a>" * 50_000,  # deep nesting, never closed
        b'<?xml version="1.0" encoding="x-no-such-encoding"?><alert/>',
        b'<?xml version="1.0" encoding="UTF-16"?><alert/>',
        "<?xml version='1.0'?><alert>é</alert>".encode("latin-1"),
        b"\xef\xbb\xbf" + document(GOOD).replace(b"Public", b"\xff\xfe"),
        document(GOOD).decode().encode("utf-16"),  # declares UTF-8, is UTF-16
        b"",
        b"\x00" * 100,
    ],
    ids=lambda d: repr(d[:30]),
)
def test_xml_attacks_and_odd_encodings_give_a_cap_error(data: bytes) -> None:
    assert outcome(data) == "refused"


def test_deep_nesting_inside_a_valid_alert_is_read_or_refused() -> None:
    deep = b"<x>" * 5_000 + b"</x>" * 5_000
    outcome(document(GOOD).replace(b"<scope>", deep + b"<scope>"))
