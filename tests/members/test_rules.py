"""Pure decision logic of the members service (no I/O): phones, quiet hours, geometry,
snapshot rules, CSV validation."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime, time, timedelta
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.members.geo import bounding_box, haversine_km
from services.members.importing import parse_csv
from services.members.phones import PhoneError, to_e164
from services.members.quiet_hours import QuietHoursError, is_quiet, parse_clock
from services.members.snapshots import (
    LiveFix,
    build_snapshot,
    live_fix_is_stale,
    live_fix_publishes,
    targeting_changed,
)

# --- phones -------------------------------------------------------------------------

french_mobiles = st.integers(0, 9_999_999).map(lambda n: f"+3361{n:07d}")


@given(french_mobiles, st.sampled_from(["", " ", "-", "."]))
def test_phone_formatting_does_not_matter(phone: str, sep: str) -> None:
    spaced = (
        phone[:3] + sep + phone[3:4] + sep + sep.join(phone[i : i + 2] for i in range(4, 12, 2))
    )
    assert to_e164(spaced) == phone
    assert to_e164(to_e164(spaced)) == phone
    assert to_e164("0" + phone[3:], "FR") == phone


@given(st.text(alphabet="abcxyz!?#*() ", max_size=20))
def test_non_numbers_are_refused(text: str) -> None:
    with pytest.raises(PhoneError):
        to_e164(text, "FR")


@pytest.mark.parametrize("raw", ["+33 1 44 55 66 77", "+3361", "+999123456789", "0612345678"])
def test_landlines_short_and_regionless_numbers_are_refused(raw: str) -> None:
    with pytest.raises(PhoneError):
        to_e164(raw)  # no region: a national number cannot be read


# --- quiet hours --------------------------------------------------------------------

clock = st.builds(time, st.integers(0, 23), st.integers(0, 59))


@given(clock)
def test_clock_round_trip(t: time) -> None:
    assert parse_clock(t.strftime("%H:%M")) == t


@pytest.mark.parametrize("text", ["24:00", "12:60", "noon", "1230", "12:3a", "", "12:00:00"])
def test_bad_clocks_are_refused(text: str) -> None:
    with pytest.raises(QuietHoursError):
        parse_clock(text)


@given(clock, clock, clock)
def test_a_window_and_its_complement_split_the_day(start: time, end: time, at: time) -> None:
    if start == end:
        return
    assert is_quiet(start, end, at) != is_quiet(end, start, at)
    assert is_quiet(start, end, start)
    assert not is_quiet(start, end, end)


def test_window_over_midnight() -> None:
    assert is_quiet(time(23), time(6, 30), time(2))
    assert not is_quiet(time(23), time(6, 30), time(12))


# --- geometry -----------------------------------------------------------------------


def _destination(lat: float, lon: float, bearing_deg: float, km: float) -> tuple[float, float]:
    r = km / 6371.0088
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    p2 = math.asin(math.sin(p1) * math.cos(r) + math.cos(p1) * math.sin(r) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(r) * math.cos(p1), math.cos(r) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


@settings(max_examples=300)
@given(
    st.floats(-89, 89),
    st.floats(-180, 180),
    st.floats(0.1, 500),
    st.floats(0, 360),
    st.floats(0, 1),
)
def test_bounding_box_holds_every_point_in_the_radius(
    lat: float, lon: float, radius: float, bearing: float, fraction: float
) -> None:
    plat, plon = _destination(lat, lon, bearing, radius * fraction)
    assert haversine_km(lat, lon, plat, plon) <= radius * 1.0001
    assert bounding_box(lat, lon, radius).contains(plat, plon)


# --- snapshots ----------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@given(st.floats(0, 5000), st.floats(0, 1000))
def test_live_fix_publishes_when_far_or_old(moved_m: float, after_s: float) -> None:
    published = LiveFix(45.0, 7.0, T0)
    lat = 45.0 + moved_m / 111_195.0
    new = LiveFix(lat, 7.0, T0 + timedelta(seconds=after_s))
    emits = live_fix_publishes(published, new, min_move_m=100, refresh_s=300)
    real_m = haversine_km(45.0, 7.0, lat, 7.0) * 1000
    assert emits == (real_m >= 100 or after_s >= 300)
    assert live_fix_publishes(None, new, min_move_m=100, refresh_s=300)


def test_older_live_fix_is_stale() -> None:
    assert live_fix_is_stale(T0, T0 - timedelta(seconds=1))
    assert not live_fix_is_stale(T0, T0)
    assert not live_fix_is_stale(None, T0)


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": uuid4(),
        "section": "AL",
        "status": "active",
        "language": "sq",
        "phone": "+355691234567",
        "consent_alerts": True,
        "availability": "available",
        "unavailable_until": None,
        "quiet_start": None,
        "quiet_end": None,
        "home_lat": 41.0,
        "home_lon": 19.8,
        "live_lat": None,
        "live_lon": None,
        "live_at": None,
        "full_name": "A",
        "email": "a@b.c",
    }
    row.update(changes)
    return row


def test_snapshot_has_no_name_or_email_and_changes_only_on_targeting() -> None:
    row = _row()
    one = build_snapshot(row, [], timezone="Europe/Tirane", version=1, changed_at=T0)
    dumped = one.model_dump_json()
    assert "a@b.c" not in dumped and '"A"' not in dumped
    renamed = build_snapshot(
        {**row, "full_name": "B", "email": "x@y.z"},
        [],
        timezone="Europe/Tirane",
        version=2,
        changed_at=T0 + timedelta(seconds=5),
    )
    assert not targeting_changed(one, renamed)
    for change in (
        {"status": "expelled"},
        {"phone": "+355691234568"},
        {"consent_alerts": False},
        {"home_lat": 41.1},
        {"language": "en"},
    ):
        other = build_snapshot(
            {**row, **change}, [], timezone="Europe/Tirane", version=2, changed_at=T0
        )
        assert targeting_changed(one, other), change
    held = build_snapshot(
        row,
        [{"code": "SAR", "issued_at": None, "expires_at": None}],
        timezone="Europe/Tirane",
        version=2,
        changed_at=T0,
    )
    assert targeting_changed(one, held)


# --- CSV ----------------------------------------------------------------------------

HEADER = [
    "section",
    "full_name",
    "phone",
    "language",
    "qualifications",
    "lat",
    "lon",
    "quiet_hours",
]


def _file(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue()


def _good(i: int) -> list[str]:
    return [
        "FR",
        f"Member {i}",
        f"+3361{i:07d}",
        "fr",
        "FIRST_AID:2030-01-01;CPR",
        "45.1",
        "7.6",
        "",
    ]


BAD_CELLS = {
    "phone": "12ab",
    "language": "tlh",
    "lat": "91",
    "qualifications": "CPR:not-a-date",
    "quiet_hours": "23:00",
    "full_name": "",
}


@settings(max_examples=60)
@given(st.integers(1, 40), st.data())
def test_csv_reports_exactly_the_bad_row(n: int, data: st.DataObject) -> None:
    rows = [_good(i) for i in range(n)]
    bad_index = data.draw(st.integers(0, n - 1))
    column = data.draw(st.sampled_from(sorted(BAD_CELLS)))
    rows[bad_index][HEADER.index(column)] = BAD_CELLS[column]
    parsed, errors = parse_csv(_file(rows), max_rows=1000)
    assert [(e.row, e.line, e.column) for e in errors] == [(bad_index + 1, bad_index + 2, column)]
    assert len(parsed) == n - 1


def test_csv_good_file_parses_with_qualifications() -> None:
    parsed, errors = parse_csv(_file([_good(i) for i in range(3)]), max_rows=10)
    assert errors == []
    first = parsed[0].member
    assert first.phone == "+33610000000"
    assert [(q.code, str(q.expires_at)) for q in first.qualifications] == [
        ("FIRST_AID", "2030-01-01"),
        ("CPR", "None"),
    ]


def test_csv_duplicate_phone_in_file_and_too_many_rows() -> None:
    rows = [_good(1), _good(2), _good(1)]
    _, errors = parse_csv(_file(rows), max_rows=10)
    assert [(e.row, e.column) for e in errors] == [(3, "phone")]
    _, errors = parse_csv(_file([_good(i) for i in range(5)]), max_rows=3)
    assert [(e.row, e.column) for e in errors] == [(4, "row")]
