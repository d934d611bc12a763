"""The demo's data set and answer plan: pure, deterministic, accepted by the members API's
own rules (the same phone validation, the same CSV columns)."""

from __future__ import annotations

import csv
import io
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from demo import dataset
from demo.answers import plan
from services.members.importing import CSV_COLUMNS
from services.members.phones import to_e164

TODAY = date(2026, 11, 30)


@settings(max_examples=25, deadline=None)
@given(total=st.integers(min_value=50, max_value=600))
def test_the_same_size_gives_the_same_members_with_distinct_valid_phones(total):
    first = dataset.members(total, TODAY)
    assert first == dataset.members(total, TODAY)
    phones = [m.phone for m in first]
    assert len(set(phones)) == total
    for member in first:
        assert to_e164(member.phone) == member.phone
        assert member.phone.startswith(dataset.PHONE_BLOCKS[member.section])


def test_the_mix_has_every_case_the_console_explains():
    members = dataset.members(3000, TODAY)
    places = {m.place for m in members}
    assert places == {"Paris", "Rome", "Tirana", "Fier"}
    expired = [m for m in members if any(d < TODAY for _, d in m.qualifications)]
    assert 0.03 < len(expired) / len(members) < 0.25
    assert 0.01 < sum(m.suspended for m in members) / len(members) < 0.1
    assert 0.03 < sum(not m.available for m in members) / len(members) < 0.15
    assert 0.05 < sum(bool(m.quiet_hours) for m in members) / len(members) < 0.25
    assert {"FIRST_AID", "CPR", "SAR"} <= {c for m in members for c, _ in m.qualifications}
    fier = [m for m in members if m.place == "Fier"]
    assert all(m.section == "AL" for m in fier)


def test_the_csv_has_the_columns_the_import_reads():
    text = dataset.to_csv(dataset.members(60, TODAY))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 60
    assert set(rows[0]) == set(CSV_COLUMNS)


@given(member_id=st.uuids(), window=st.floats(min_value=5, max_value=600))
def test_an_answer_comes_within_the_window_and_only_yes_has_an_eta(member_id, window):
    answer = plan(str(member_id), window, seed="e")
    assert answer == plan(str(member_id), window, seed="e")
    assert 0 < answer.delay_s <= window
    assert (answer.eta_minutes is not None) == (answer.outcome == "yes")
    text = answer.sms_text("sq")
    assert (text is None) == (answer.outcome == "silent")
    if answer.eta_minutes is not None:
        assert text == f"PO {answer.eta_minutes}"
