"""Selection rules, one by one, and its invariants under hypothesis."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts.selection import (
    Target,
    first_wave_count,
    in_quiet_window,
    select,
    target_for,
)
from shared.events.emergencies import Area
from shared.events.members import Position
from tests.alerts.members import CENTRE, member

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 13:00 in Tirana


def circle(count: int = 100, radius_m: float = 3000, **kw) -> Target:  # type: ignore[no-untyped-def]
    return target_for(
        section=kw.pop("section", "AL"),
        assisting_sections=kw.pop("assisting", []),
        area=Area(lat=CENTRE[0], lon=CENTRE[1], radius_m=int(radius_m)),
        required_qualifications=kw.pop("required", ["FIRST_AID"]),
        severity=kw.pop("severity", "Severe"),
        count=count,
    )


def pick(members, target, **kw):  # type: ignore[no-untyped-def]
    return {c.member_id for c in select(members, target, NOW, live_max_age_s=1800, **kw)}


def test_each_rule_excludes_its_member() -> None:
    ok = member()
    far = member(lat=CENTRE[0] + 0.1)  # ~11 km
    expelled = member(status="expelled")
    suspended = member(status="suspended")
    no_consent = member(consent_alerts=False)
    unavailable = member(availability="unavailable")
    back = member(availability="unavailable", unavailable_until=NOW - timedelta(minutes=1))
    expired = member(qualifications=[("FIRST_AID", date(2026, 11, 22))])
    expires_today = member(qualifications=[("FIRST_AID", date(2026, 11, 23))])
    unqualified = member(qualifications=[("SAR", None)])
    quiet = member(quiet=(time(12, 30), time(14, 0)))  # 13:00 local
    quiet_utc_only = member(quiet=(time(11, 30), time(12, 30)))  # quiet at 12:00 UTC, not local
    other_section = member(section="IT")
    no_phone = member(phone=None)
    chosen = pick(
        [ok, far, expelled, suspended, no_consent, unavailable, back, expired, expires_today,
         unqualified, quiet, quiet_utc_only, other_section, no_phone],
        circle(),
    )  # fmt: skip
    assert chosen == {
        ok.member_id,
        back.member_id,
        expires_today.member_id,
        quiet_utc_only.member_id,
    }


def test_extreme_overrides_quiet_hours_and_assisting_sections_count() -> None:
    quiet = member(quiet=(time(22, 0), time(14, 0)))  # spans midnight, 13:00 local is inside
    helper = member(section="IT", language="it")
    assert pick([quiet, helper], circle(severity="Severe")) == set()
    assert pick([quiet, helper], circle(severity="Extreme", assisting=["IT"])) == {
        quiet.member_id,
        helper.member_id,
    }


def test_live_position_counts_only_while_fresh() -> None:
    away_home = dict(lat=CENTRE[0] + 0.2, lon=CENTRE[1])
    fresh = member(
        **away_home,
        live=Position(lat=CENTRE[0], lon=CENTRE[1], at=NOW - timedelta(minutes=5), source="live"),
    )
    stale = member(
        **away_home,
        live=Position(lat=CENTRE[0], lon=CENTRE[1], at=NOW - timedelta(hours=3), source="live"),
    )
    assert pick([fresh, stale], circle()) == {fresh.member_id}


def test_polygon_already_alerted_committed_opted_out_and_order() -> None:
    square = {
        "type": "Polygon",
        "coordinates": [
            [[19.55, 40.72], [19.56, 40.72], [19.56, 40.73], [19.55, 40.73], [19.55, 40.72]]
        ],
    }
    target = target_for(
        section="AL", assisting_sections=[], area=Area(polygon=square),
        required_qualifications=[], severity="Severe", count=10,
    )  # fmt: skip
    inside = [member(lat=40.721 + i * 0.001, lon=19.555) for i in range(5)]
    outside = member(lat=40.735, lon=19.555)
    alerted, committed, stopped = inside[0], inside[1], inside[2]
    result = select(
        [*inside, outside], target, NOW, live_max_age_s=1800,
        already_alerted={alerted.member_id}, committed={committed.member_id},
        opted_out_phones={stopped.phone},
    )  # fmt: skip
    assert [c.member_id for c in result] == sorted(
        [inside[3].member_id, inside[4].member_id],
        key=lambda mid: next(c.distance_m for c in result if c.member_id == mid),
    )
    assert {c.member_id for c in result} == {inside[3].member_id, inside[4].member_id}


def test_count_is_the_nearest_n_and_first_wave_factor() -> None:
    members = [member(lat=CENTRE[0] + i * 0.001) for i in range(20)]
    chosen = select(members, circle(count=first_wave_count(2, 3)), NOW, live_max_age_s=0)
    assert [c.member_id for c in chosen] == [m.member_id for m in members[:6]]


def test_quiet_window() -> None:
    assert in_quiet_window(time(23, 30), time(23, 0), time(6, 30))
    assert in_quiet_window(time(5, 0), time(23, 0), time(6, 30))
    assert not in_quiet_window(time(6, 30), time(23, 0), time(6, 30))
    assert in_quiet_window(time(13, 0), time(12, 0), time(14, 0))


# --- invariants ----------------------------------------------------------------------

members_strategy = st.builds(
    lambda lat, lon, status, consent, avail, expiry, sec, quiet: member(
        lat=lat, lon=lon, status=status, consent_alerts=consent, availability=avail,
        qualifications=[("FIRST_AID", expiry)], section=sec,
        quiet=(time(quiet, 0), time((quiet + 3) % 24, 0)) if quiet is not None else None,
    ),
    st.floats(CENTRE[0] - 0.05, CENTRE[0] + 0.05),
    st.floats(CENTRE[1] - 0.05, CENTRE[1] + 0.05),
    st.sampled_from(["active", "suspended", "expelled"]),
    st.booleans(),
    st.sampled_from(["available", "unavailable"]),
    st.one_of(st.none(), st.dates(date(2026, 1, 1), date(2028, 1, 1))),
    st.sampled_from(["AL", "IT"]),
    st.one_of(st.none(), st.integers(0, 23)),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    candidates=st.lists(members_strategy, max_size=40),
    count=st.integers(0, 30),
    radius=st.integers(100, 8000),
    severity=st.sampled_from(["Extreme", "Severe", "Minor"]),
)
def test_selection_invariants(candidates, count, radius, severity) -> None:  # type: ignore[no-untyped-def]
    target = circle(count=count, radius_m=radius, severity=severity)
    chosen = select(candidates, target, NOW, live_max_age_s=1800)
    ids = [c.member_id for c in chosen]
    assert len(chosen) <= count
    assert set(ids) <= {m.member_id for m in candidates}
    assert len(ids) == len(set(ids))
    assert all(c.member.status == "active" and c.member.consent_alerts for c in chosen)
    assert all(c.member.availability == "available" for c in chosen)
    assert all(c.distance_m <= radius + 1 for c in chosen)
    distances = [c.distance_m for c in chosen]
    assert distances == sorted(distances)
    # nothing nearer was left out for a farther one
    admitted = select(candidates, circle(count=10_000, radius_m=radius, severity=severity), NOW,
                      live_max_age_s=1800)  # fmt: skip
    assert ids == [c.member_id for c in admitted][:count]


@settings(max_examples=50, deadline=None)
@given(st.lists(members_strategy, max_size=20), st.data())
def test_already_alerted_never_chosen_again(candidates, data) -> None:  # type: ignore[no-untyped-def]
    alerted = (
        data.draw(st.sets(st.sampled_from([m.member_id for m in candidates])))
        if candidates
        else set()
    )
    chosen = select(candidates, circle(), NOW, live_max_age_s=1800, already_alerted=alerted)
    assert not ({c.member_id for c in chosen} & alerted)
    assert uuid.uuid4() not in {c.member_id for c in chosen}
