"""Members' SMS commands and personal page, the pure parts (issue 11, self-service): the
command parser (member_commands.py), what AWAY means in time, the STATUS text, the
personal page's validation and the expiry reminders due."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.alerts import replies
from services.alerts.member_commands import MAX_AWAY_DAYS, WORDS, next_date, parse
from services.alerts.member_page import FieldError, page_request
from services.alerts.qualification_expiry import due_reminders, reminder_sms
from services.alerts.self_service import away_until, status_text
from shared.events.members import MemberChanged, MemberSelfServiceRequested, QualificationHeld
from shared.events.members import QuietHours as Quiet
from shared.reply_codes import is_reply_code

TODAY = date(2026, 11, 30)
TIRANE = ZoneInfo("Europe/Tirane")


def snapshot(**overrides: object) -> MemberChanged:
    values: dict[str, object] = {
        "member_id": uuid.uuid4(),
        "version": 1,
        "section": "AL",
        "status": "active",
        "language": "en",
        "timezone": "Europe/Tirane",
        "phone": "+355691234567",
        "consent_alerts": True,
        "changed_at": datetime.now(UTC),
    }
    values.update(overrides)
    return MemberChanged.model_validate(values)


# --- the parser --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind", "language"),
    [
        ("AWAY", "away", "en"),
        ("away", "away", "en"),
        (" Away! ", "away", "en"),
        ("ABSENT", "away", "fr"),
        ("assente", "away", "it"),
        ("LARG", "away", "sq"),
        ("BACK", "back", "en"),
        ("retour", "back", "fr"),
        ("Rientro", "back", "it"),
        ("KTHIM", "back", "sq"),
        ("STATUS", "status", "en"),
        ("statut", "status", "fr"),
        ("STATO", "status", "it"),
        ("gjendja", "status", "sq"),
        ("LINK", "link", "en"),
        ("lien", "link", "fr"),
        ("LIDHJE", "link", "sq"),
    ],
)
def test_command_words_in_four_languages(body: str, kind: str, language: str) -> None:
    command = parse(body, TODAY)
    assert command is not None and command.kind == kind and command.language == language


def test_away_forms() -> None:
    assert parse("AWAY 3", TODAY) == parse("away 3 days", TODAY)
    three = parse("AWAY 3", TODAY)
    assert three is not None and three.kind == "away" and three.days == 3
    dated = parse("AWAY 25/12", TODAY)
    assert dated is not None and dated.until == date(2026, 12, 25)
    assert parse("ABSENT 25.12", TODAY) == parse("absent 25-12", TODAY)
    # the next such date: 15 March is next year's
    later = parse("AWAY 15/03", TODAY)
    assert later is not None and later.until == date(2027, 3, 15)
    # today's own date means next year's
    same = parse("AWAY 30/11", TODAY)
    assert same is not None and same.until == date(2027, 11, 30)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("AWAY 99999", "away_days"),
        ("AWAY 0", "away_days"),
        ("AWAY 367", "away_days"),
        ("AWAY 31/02", "away_date"),
        ("AWAY 29/02", "away_date"),  # the next 29 February is more than a year away
        ("AWAY 12/13", "away_date"),
        ("AWAY soon", "away_form"),
        ("AWAY 3 4", "away_form"),
        ("AWAY 1234567", "away_form"),
    ],
)
def test_bad_away_gets_its_help(body: str, problem: str) -> None:
    command = parse(body, TODAY)
    assert command is not None and command.kind == "invalid" and command.problem == problem


@pytest.mark.parametrize(
    "body",
    ["YES", "YES 15", "NO", "OK", "SAFE", "ARRIVED", "OK HOME", "BACK HOME", "STATUS OK",
     "LINK PLEASE", "", "   ", "STOP", "HELP", "PO 10", "RIENTRATO", "A CASA"],
)  # fmt: skip
def test_replies_and_longer_phrases_are_left_to_the_reply_parser(body: str) -> None:
    assert parse(body, TODAY) is None


def _reply_phrases() -> set[str]:
    """Every word or phrase the reply parser knows (whatever lists replies.py has)."""
    phrases: set[str] = set()
    for value in vars(replies).values():
        if isinstance(value, frozenset) and all(isinstance(v, str) for v in value):
            phrases |= set(value)
    return phrases


def test_no_command_word_is_a_reply_word_or_a_code() -> None:
    phrases = _reply_phrases()
    assert {"YES", "NO", "OUI", "PO", "JO"} <= phrases  # the lists were found
    for word in WORDS:
        assert word not in phrases, word
        assert replies.parse(word).kind == "unknown", word
        assert not is_reply_code(word) and not any(c.isdigit() for c in word), word
    for phrase in phrases:
        assert parse(phrase, TODAY) is None, phrase


@given(st.text(max_size=200))
def test_parse_never_fails_and_only_command_words_start_commands(body: str) -> None:
    command = parse(body, TODAY)
    if command is not None:
        first = body.split()[0] if body.split() else ""
        assert command.kind in ("away", "back", "status", "link", "invalid")
        assert first, body


@given(st.integers(min_value=-10, max_value=10_000))
def test_away_days_bounded(days: int) -> None:
    command = parse(f"AWAY {days}", TODAY)
    assert command is not None
    if 1 <= days <= MAX_AWAY_DAYS:
        assert command.kind == "away" and command.days == days
    else:
        assert command.kind == "invalid"


@given(
    st.integers(min_value=1, max_value=31),
    st.integers(min_value=1, max_value=12),
    st.dates(min_value=date(2020, 1, 1), max_value=date(2040, 12, 31)),
)
def test_next_date_is_the_next_such_day(day: int, month: int, today: date) -> None:
    found = next_date(day, month, today)
    if found is None:
        # no such day in the coming year
        for year in (today.year, today.year + 1):
            try:
                candidate = date(year, month, day)
            except ValueError:
                continue
            assert not today < candidate <= today + timedelta(days=MAX_AWAY_DAYS)
        return
    assert (found.day, found.month) == (day, month)
    assert today < found <= today + timedelta(days=MAX_AWAY_DAYS)
    # and none earlier
    assert all(
        (d.day, d.month) != (day, month)
        for d in (today + timedelta(days=i) for i in range(1, (found - today).days))
    )


# --- what AWAY means, STATUS ---------------------------------------------------------------


def test_away_until_days_and_dates() -> None:
    now = datetime(2026, 11, 30, 21, 30, tzinfo=UTC)
    three = parse("AWAY 3", TODAY)
    assert three is not None
    assert away_until(three, now=now, zone=TIRANE) == now + timedelta(days=3)
    dated = parse("AWAY 3/12", TODAY)
    assert dated is not None
    # available again at the start of 3 December in Tirana (23:00 UTC the day before)
    assert away_until(dated, now=now, zone=TIRANE) == datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
    bare = parse("AWAY", TODAY)
    assert bare is not None and away_until(bare, now=now, zone=TIRANE) is None


def test_status_says_availability_quiet_hours_and_expiring_qualifications() -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    member = snapshot(
        availability="unavailable",
        unavailable_until=datetime(2026, 12, 3, 10, 0, tzinfo=UTC),
        quiet_hours=Quiet(start=time(22, 0), end=time(7, 0)),
        qualifications=[
            QualificationHeld(code="CPR", expires_at=date(2027, 1, 12)),
            QualificationHeld(code="SAR", expires_at=date(2028, 1, 1)),
            QualificationHeld(code="FIRST_AID", expires_at=date(2026, 12, 20)),
        ],
    )
    said = status_text(member, now=now, within_days=60)
    assert said.startswith("MUSTER: away until 03/12. Quiet hours: 22:00-07:00.")
    assert "First aid 20/12" in said and "(CPR) 12/01" in said and "Search" not in said
    back = member.model_copy(update={"availability": "available", "unavailable_until": None})
    assert "MUSTER: available." in status_text(back, now=now, within_days=60)
    # an absence whose end has passed is over
    over = member.model_copy(update={"unavailable_until": now - timedelta(minutes=1)})
    assert "MUSTER: available." in status_text(over, now=now, within_days=60)
    none_soon = snapshot(language="fr", qualifications=[])
    said_fr = status_text(none_soon, now=now, within_days=60)
    assert "disponible" in said_fr and "aucune" in said_fr and "60 jours" in said_fr


# --- the personal page ---------------------------------------------------------------------


def _form(**overrides: str) -> dict[str, str]:
    form = {
        "availability": "available",
        "away_until": "",
        "quiet_start": "",
        "quiet_end": "",
        "language": "en",
        "location_consent": "",
        "lat": "",
        "lon": "",
    }
    form.update(overrides)
    return form


NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_page_request_changes() -> None:
    member = snapshot()
    asked = page_request(
        _form(
            availability="away",
            away_until="2026-12-25",
            quiet_start="22:00",
            quiet_end="07:00",
            language="it",
        ),
        member,
        now=NOW,
    )
    assert isinstance(asked, MemberSelfServiceRequested)
    assert asked.availability == "unavailable" and asked.channel == "web"
    assert asked.unavailable_until == datetime(2026, 12, 24, 23, 0, tzinfo=UTC)
    assert asked.quiet_hours == Quiet(start=time(22, 0), end=time(7, 0))
    assert asked.language == "it" and asked.location is None and not asked.location_consent
    plain = page_request(_form(), member, now=NOW)
    assert isinstance(plain, MemberSelfServiceRequested)
    assert plain.availability == "available" and plain.quiet_hours_off


def test_a_position_goes_only_with_consent() -> None:
    member = snapshot()
    without = page_request(_form(lat="40.72", lon="19.55"), member, now=NOW)
    assert isinstance(without, MemberSelfServiceRequested) and without.location is None
    consented = page_request(
        _form(lat="40,72", lon="19.55", location_consent="yes"), member, now=NOW
    )
    assert isinstance(consented, MemberSelfServiceRequested)
    assert consented.location_consent and consented.location is not None
    assert (consented.location.lat, consented.location.lon) == (40.72, 19.55)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"availability": "maybe"}, "availability"),
        ({"availability": "away", "away_until": "2026-02-31"}, "away_until"),
        ({"availability": "away", "away_until": "2026-11-30"}, "away_until"),
        ({"availability": "away", "away_until": "2030-01-01"}, "away_until"),
        ({"quiet_start": "22:00"}, "quiet_end"),
        ({"quiet_end": "07:00"}, "quiet_start"),
        ({"quiet_start": "25:00", "quiet_end": "07:00"}, "quiet_start"),
        ({"quiet_start": "07:00", "quiet_end": "07:00"}, "quiet_end"),
        ({"language": "xx"}, "language"),
        ({"location_consent": "yes"}, "lat"),
        ({"location_consent": "yes", "lat": "91", "lon": "0"}, "lat"),
        ({"location_consent": "yes", "lat": "nan", "lon": "0"}, "lat"),
        ({"location_consent": "yes", "lat": "40", "lon": "east"}, "lon"),
    ],
)
def test_page_bad_input_names_the_field(overrides: dict[str, str], field: str) -> None:
    refused = page_request(_form(**overrides), snapshot(), now=NOW)
    assert isinstance(refused, FieldError) and refused.field == field


# --- expiry reminders due ------------------------------------------------------------------


def test_due_reminders_within_the_window_for_active_members_with_a_number() -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)

    def held(days: int) -> QualificationHeld:
        return QualificationHeld(code=f"Q{days + 100}", expires_at=TODAY + timedelta(days=days))

    member = snapshot(qualifications=[held(-1), held(0), held(29), held(30), held(31)])
    due = due_reminders([member], now=now, within_days=30)
    expected = [TODAY, TODAY + timedelta(29), TODAY + timedelta(30)]
    assert sorted(d.expires_at for d in due) == expected
    assert due_reminders([member.model_copy(update={"phone": None})], now=now, within_days=30) == []
    suspended = member.model_copy(update={"status": "suspended"})
    assert due_reminders([suspended], now=now, within_days=30) == []
    sms = reminder_sms(member.model_copy(update={"language": "it"}), "CPR", date(2026, 12, 25))
    assert "Rianimazione" in sms and "25/12" in sms


_FIELDS = ("availability", "away_until", "quiet_start", "quiet_end", "language", "lat", "lon")


@given(
    st.fixed_dictionaries(
        {
            name: st.one_of(
                st.text(max_size=64),
                st.sampled_from(["available", "away", "2026-12-25", "22:00", "07:00", "fr"]),
                st.from_regex(r"-?\d{1,3}([.,]\d{1,6})?", fullmatch=True),
            )
            for name in _FIELDS
        }
    ),
    st.sampled_from(["", "yes", "no"]),
)
def test_page_request_never_fails_and_needs_consent_for_a_position(
    form: dict[str, str], consent: str
) -> None:
    asked = page_request({**form, "location_consent": consent}, snapshot(), now=NOW)
    if isinstance(asked, FieldError):
        assert asked.field in _FIELDS
        return
    assert asked.language in ("en", "fr", "it", "sq")
    if consent != "yes":
        assert asked.location is None and not asked.location_consent
    else:
        assert asked.location is not None and asked.location_consent
