"""The reply parser and the SMS texts (pure)."""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts import messages
from services.alerts.replies import ACCEPT, DECLINE, Kind, Reply, parse


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("YES 15", Reply("accepted", 15)),
        ("oui 10 min", Reply("accepted", 10)),
        ("Sì", Reply("accepted")),
        ("si!", Reply("accepted")),
        ("PO", Reply("accepted")),
        ("po 20min", Reply("accepted", 20)),
        ("Ja, 1h", Reply("accepted", 60)),
        ("1", Reply("accepted")),
        ("jo", Reply("declined")),
        ("no", Reply("declined")),
        ("Non.", Reply("declined")),
        ("2", Reply("declined")),
        ("nein", Reply("declined")),
        ("ARRIVED", Reply("on_scene")),
        ("on scene", Reply("on_scene")),
        ("STOP", Reply("stop")),
        ("start", Reply("start")),
        ("Help", Reply("help")),
        ("YES K42 15", Reply("accepted", 15, "K42")),
        ("k42 no", Reply("declined", None, "K42")),
        ("blah", Reply("unknown")),
        ("yes but maybe later", Reply("unknown")),
        ("15", Reply("unknown")),
        ("", Reply("unknown")),
        ("YES 99999", Reply("unknown")),
        ("STOP K42", Reply("unknown")),
    ],
)
def test_examples(body: str, expected: Reply) -> None:
    assert parse(body) == expected


decoration = st.sampled_from(["", " ", "!", ".", "  ", "?!", "\n", "..."])


@settings(max_examples=300)
@given(
    word=st.sampled_from(sorted(ACCEPT | DECLINE)),
    eta=st.one_of(st.none(), st.integers(0, 1440)),
    before=decoration,
    after=decoration,
    upper=st.booleans(),
)
def test_case_and_punctuation_do_not_matter(word, eta, before, after, upper) -> None:  # type: ignore[no-untyped-def]
    body = word + (f" {eta} min" if eta is not None and word in ACCEPT else "")
    body = body.upper() if upper else body.lower()
    reply = parse(before + body + after)
    expected = "accepted" if word in ACCEPT else "declined"
    assert reply.kind == expected
    assert reply.eta_minutes == (eta if word in ACCEPT else None)


@given(st.text(max_size=80))
def test_never_crashes_and_eta_is_bounded(body: str) -> None:
    reply = parse(body)
    assert reply.kind in set(get_args(Kind))
    assert reply.eta_minutes is None or 0 <= reply.eta_minutes <= 1440


@given(st.sampled_from(["SÌ", "sì", "SI", "Si", "sí", "ŠI"]))
def test_accents_are_ignored(body: str) -> None:
    assert parse(body).kind == "accepted"


def test_segments_gsm7_and_ucs2() -> None:
    assert messages.segments("a" * 160) == 1
    assert messages.segments("a" * 161) == 2
    assert messages.segments("€" * 80) == 1  # extension characters count two septets
    assert messages.segments("€" * 81) == 2
    assert messages.encoding_of("ë" * 70) == messages.Encoding("UCS-2", 70, 1)
    assert messages.segments("ë" * 71) == 2


@pytest.mark.parametrize("language", ["en", "fr", "it", "sq", "de"])
def test_alert_fits_one_segment_and_drills_start_with_the_word(language: str) -> None:
    body = messages.alert_sms(
        language=language,
        title="Flooding in the old town centre near the river, several houses cut off",
        distance_m=1234,
        members_needed=5,
        qualifications=["FIRST_AID"],
        drill=True,
        link="https://alerts.muster.test/r/" + "x" * 22,
        reply_code="K42",
    )
    assert body.startswith(messages.text(language, "drill") + " ")
    assert messages.segments(body) == 1, (len(body), body)
    assert "https://alerts.muster.test/r/" + "x" * 22 in body
    assert "K42" in body and "1.2 km" in body
