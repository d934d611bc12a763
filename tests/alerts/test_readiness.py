"""The readiness figure (issue 12), pure: what the member data implies, counted once per
member; the authorities' version holds only counts and shares, small ones suppressed."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts.drills import Asked
from services.alerts.readiness import for_authorities, last_drill, readiness
from shared.events.members import MemberChanged
from tests.alerts.members import member

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
TODAY = date(2026, 12, 1)


def test_counts_of_a_small_section() -> None:
    people = [
        member(qualifications=[("FIRST_AID", TODAY + timedelta(days=10))]),
        member(qualifications=[("FIRST_AID", TODAY + timedelta(days=45)), ("SAR", None)]),
        member(qualifications=[("FIRST_AID", TODAY + timedelta(days=90))]),
        member(qualifications=[("FIRST_AID", TODAY - timedelta(days=1))]),
        member(availability="unavailable", qualifications=[("SAR", None)]),
        member(status="suspended"),
        member(section="IT"),
    ]
    drill = last_drill(
        NOW - timedelta(days=3),
        [
            Asked("AL", (), "sent", NOW, NOW + timedelta(minutes=2)),
            Asked("AL", (), "sent", NOW, NOW + timedelta(minutes=10)),
            Asked("AL", (), "sent", NOW, None),
            Asked("AL", (), "failed", None, None),
            Asked("AL", (), "skipped", None, None),
        ],
    )
    figure = readiness("AL", [*people, people[0]], NOW, drill)
    assert figure.active_members == 5
    assert figure.available_now == 4
    assert figure.by_qualification == {
        "FIRST_AID": {"valid_today": 3, "valid_in_30_days": 2, "valid_in_60_days": 1},
        "SAR": {"valid_today": 2, "valid_in_30_days": 2, "valid_in_60_days": 2},
    }
    assert figure.last_drill is not None
    assert (figure.last_drill.asked, figure.last_drill.answered) == (4, 2)
    assert figure.last_drill.median_answer_seconds == 360.0

    shown = for_authorities(figure, 3)
    assert shown.active_members == 5 and shown.available_now == 4
    assert shown.by_qualification["FIRST_AID"] == {
        "valid_today": 3, "valid_in_30_days": "< 3", "valid_in_60_days": "< 3",
    }  # fmt: skip
    assert shown.last_drill is not None
    assert shown.last_drill.answered == "< 3"
    assert shown.last_drill.answered_share is None
    assert shown.last_drill.median_answer_seconds is None  # from 2 answers: too close to one


HORIZONS = (("valid_today", 0), ("valid_in_30_days", 30), ("valid_in_60_days", 60))


def brute_force(people: list[MemberChanged]) -> dict[str, object]:
    """The figure recomputed the plain way, per member."""
    active = {m.member_id: m for m in people if m.section == "AL" and m.status == "active"}
    counts: dict[str, dict[str, int]] = {}
    for m in active.values():
        for code in {q.code for q in m.qualifications}:
            per = counts.setdefault(code, {name: 0 for name, _ in HORIZONS})
            for name, days in HORIZONS:
                day = TODAY + timedelta(days=days)
                expiries = [q.expires_at for q in m.qualifications if q.code == code]
                if any(e is None or e >= day for e in expiries):
                    per[name] += 1
    return {
        "active": len(active),
        "available": sum(
            1 for m in active.values()
            if m.availability == "available" and m.consent_alerts and m.phone
        ),
        "by_qualification": counts,
    }  # fmt: skip


def someone(
    section: str, status: str, available: bool, consent: bool, quals: list[tuple[str, int | None]]
) -> MemberChanged:
    return member(
        section=section,
        status=status,
        availability="available" if available else "unavailable",
        consent_alerts=consent,
        qualifications=[
            (code, TODAY + timedelta(days=d) if d is not None else None) for code, d in quals
        ],
        timezone="UTC",
    )


people_strategy = st.lists(
    st.builds(
        someone,
        st.sampled_from(["AL", "IT"]),
        st.sampled_from(["active", "active", "suspended", "expelled"]),
        st.booleans(),
        st.booleans(),
        st.lists(
            st.tuples(
                st.sampled_from(["FIRST_AID", "SAR", "CPR"]), st.none() | st.integers(-20, 120)
            ),
            max_size=3,
        ),
    ),
    max_size=40,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(people=people_strategy, k=st.integers(1, 8))
def test_the_figure_is_what_the_data_implies_and_authorities_see_no_one(
    people: list[MemberChanged], k: int
) -> None:
    figure = readiness("AL", people, NOW)
    expected = brute_force(people)
    assert figure.active_members == expected["active"]
    assert figure.available_now == expected["available"]
    assert figure.by_qualification == expected["by_qualification"]
    for counts in figure.by_qualification.values():
        assert counts["valid_in_60_days"] <= counts["valid_in_30_days"] <= counts["valid_today"]

    shown = for_authorities(figure, k)
    body = json.dumps(shown.model_dump(mode="json"))
    for m in people:
        assert str(m.member_id) not in body and str(m.member_id.hex) not in body
        assert (m.phone or "\x00") not in body
    # every count is itself from k on, "< k" below
    values = [shown.active_members, shown.available_now] + [
        v for counts in shown.by_qualification.values() for v in counts.values()
    ]
    raw = [figure.active_members, figure.available_now] + [
        v for counts in figure.by_qualification.values() for v in counts.values()
    ]
    for got, count in zip(values, raw, strict=True):
        assert got == (count if count >= k else f"< {k}")
