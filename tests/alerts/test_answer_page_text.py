"""What the answer page says, as pure functions: distances people read, qualification
names in the member's language, and the map links to where to go."""

from __future__ import annotations

import re
import uuid
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from services.alerts import messages
from services.alerts.answer_page import MapLinks, _emergency_page, where_to_go
from services.alerts.answers import OpenAlert
from services.alerts.responder_states import Button

NBSP = "\u00a0"


def test_distances_read_as_people_say_them() -> None:
    assert messages.distance_text(0, "en") == f"<{NBSP}10{NBSP}m"
    assert messages.distance_text(248, "en") == f"250{NBSP}m"
    assert messages.distance_text(990, "en") == f"990{NBSP}m"
    assert messages.distance_text(1000, "en") == f"1{NBSP}km"
    assert messages.distance_text(3421, "en") == f"3.4{NBSP}km"
    assert messages.distance_text(3421, "fr") == f"3,4{NBSP}km"
    assert messages.distance_text(3421, "sq") == f"3,4{NBSP}km"
    assert messages.distance_text(12_345, "it") == f"12{NBSP}km"


_SHAPE = re.compile(r"^(<\u00a010\u00a0m|\d{2,3}\u00a0m|\d+([.,]\d)?\u00a0km)$")


def _metres(shown: str) -> float | None:
    number, unit = shown.rsplit(NBSP, 1)
    if number.startswith("<"):
        return None
    value = float(number.replace(",", "."))
    return value * 1000 if unit == "km" else value


@given(st.floats(0, 60_000, allow_nan=False), st.sampled_from(["en", "fr", "it", "sq", "de"]))
def test_a_distance_is_short_and_close_to_the_truth(metres: float, language: str) -> None:
    shown = messages.distance_text(metres, language)
    assert _SHAPE.match(shown), shown
    value = _metres(shown)
    if value is None:
        assert metres < 10
    else:
        # 10 m under a kilometre, 100 m under 10 km, 1 km beyond: never more off than half
        step = 10 if value < 1000 else 100 if value < 10_000 else 1000
        assert abs(value - metres) <= step / 2 + 1e-6


@given(st.floats(0, 60_000, allow_nan=False), st.floats(0, 60_000, allow_nan=False))
def test_a_farther_place_never_reads_nearer(a: float, b: float) -> None:
    near, far = sorted((a, b))
    shown_near, shown_far = (_metres(messages.distance_text(x, "en")) for x in (near, far))
    assert (shown_near or 0) <= (shown_far or 0) or shown_far is None


def test_qualification_names_in_each_language() -> None:
    assert messages.qualification_name("FIRST_AID", "en") == "First aid"
    assert messages.qualification_name("FIRST_AID", "fr") == "Premiers secours"
    assert messages.qualification_name("FIRST_AID", "it") == "Primo soccorso"
    assert messages.qualification_name("FIRST_AID", "sq") == "Ndihma e parë"
    assert messages.qualification_name("SAR", "sq-AL") == "Kërkim dhe shpëtim"
    # a code added after this catalogue reads as words, never as WATER_RESCUE
    assert messages.qualification_name("WATER_RESCUE", "fr") == "Water rescue"


def test_where_to_go_is_the_area_centre() -> None:
    circle = where_to_go({"lat": 40.7239, "lon": 19.5561, "radius_m": 3000})
    assert circle == MapLinks(40.7239, 19.5561)
    assert circle.geo == "geo:40.723900,19.556100"
    assert circle.openstreetmap == (
        "https://www.openstreetmap.org/?mlat=40.723900&mlon=19.556100#map=16/40.723900/19.556100"
    )
    square = {
        "type": "Polygon",
        "coordinates": [[[19.5, 40.7], [19.6, 40.7], [19.6, 40.8], [19.5, 40.8], [19.5, 40.7]]],
    }
    assert where_to_go({"polygon": square}) == MapLinks(40.75, 19.55)
    assert where_to_go({}) is None


def test_the_page_names_qualifications_distance_and_links() -> None:
    alert = SimpleNamespace(language="fr", distance_m=3421, response=None)
    emergency = SimpleNamespace(
        id=uuid.uuid4(),
        title="Inondation <Fier>",
        drill=True,
        members_needed=5,
        status="active",
        facts={
            "description": "Evacuation",
            "required_qualifications": ["FIRST_AID", "SAR"],
            "area": {"lat": 40.7239, "lon": 19.5561, "radius_m": 3000},
        },
    )
    shown: list[Button] = ["coming", "not_coming"]
    html = _emergency_page(OpenAlert(alert, emergency), notice=None, shown=shown).body.decode()
    assert 'lang="fr"' in html
    assert "Premiers secours, Recherche et sauvetage" in html and "FIRST_AID" not in html
    assert f"3,4{NBSP}km" in html
    assert 'href="geo:40.723900,19.556100"' in html
    assert "https://www.openstreetmap.org/?mlat=40.723900&amp;mlon=19.556100#map=16/" in html
    assert "Inondation &lt;Fier&gt;" in html  # escaped
    assert "EXERCICE" in html and "<script" not in html
