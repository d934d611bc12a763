"""The safety loop's words in the reply parser (pure): en_route, on_scene, home_safe and
the roll-call OK in en/fr/it/sq (and de), no phrase of two kinds, nothing guessed."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts import messages
from services.alerts.replies import (
    ACCEPT,
    DECLINE,
    EN_ROUTE,
    HELP,
    HOME_SAFE,
    ON_SCENE,
    ROLL_CALL_OK,
    START,
    STOP,
    Reply,
    is_reply_code,
    normalise,
    parse,
)

SAFETY_SETS = {
    "en_route": EN_ROUTE,
    "on_scene": ON_SCENE,
    "home_safe": HOME_SAFE,
    "roll_call_ok": ROLL_CALL_OK,
}


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        # en
        ("On my way", "en_route"),
        ("EN ROUTE", "en_route"),
        ("arrived", "on_scene"),
        ("On scene.", "on_scene"),
        ("SAFE", "home_safe"),
        ("ok home", "home_safe"),
        ("Home safe!", "home_safe"),
        ("OK", "roll_call_ok"),
        ("I'm OK", "roll_call_ok"),
        # fr
        ("en chemin", "en_route"),
        ("ARRIVÉ", "on_scene"),
        ("arrivée", "on_scene"),
        ("sur place", "on_scene"),
        ("EN SÉCURITÉ", "home_safe"),
        ("rentré", "home_safe"),
        ("D'ACCORD", "roll_call_ok"),
        ("ça va", "roll_call_ok"),
        # it
        ("IN ARRIVO", "en_route"),
        ("partito", "en_route"),
        ("ARRIVATO", "on_scene"),
        ("sul posto", "on_scene"),
        ("A CASA", "home_safe"),
        ("al sicuro", "home_safe"),
        ("VA BENE", "roll_call_ok"),
        # sq
        ("NË RRUGË", "en_route"),
        ("MBËRRITA", "on_scene"),
        ("mberrita", "on_scene"),
        ("NË SHTËPI", "home_safe"),
        ("jam ne shtepi", "home_safe"),
        ("MIRË", "roll_call_ok"),
        ("në rregull", "roll_call_ok"),
        # de
        ("unterwegs", "en_route"),
        ("angekommen", "on_scene"),
        ("zuhause", "home_safe"),
        ("alles gut", "roll_call_ok"),
    ],
)
def test_phrases_in_each_language(body: str, kind: str) -> None:
    assert parse(body) == Reply(kind)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        "OK OK",  # not a phrase of the lists: never a guess
        "ok home now",
        "safe?? maybe",
        "arrived 15",
        "home safe soon",
        "en",
        "route",
        "on",
        "scene",
        "my way",
        "SAFE K42 R7V",  # two codes
    ],
)
def test_anything_else_is_unknown(body: str) -> None:
    assert parse(body) == Reply("unknown")


def test_a_code_goes_with_the_safety_words() -> None:
    assert parse("SAFE R7V") == Reply("home_safe", code="R7V")
    assert parse("r7v ok") == Reply("roll_call_ok", code="R7V")
    assert parse("ARRIVATO K42") == Reply("on_scene", code="K42")


def test_no_phrase_belongs_to_two_kinds_nor_to_an_answer_or_a_command() -> None:
    for (a, first), (b, second) in itertools.combinations(SAFETY_SETS.items(), 2):
        assert not first & second, (a, b, first & second)
    everything = EN_ROUTE | ON_SCENE | HOME_SAFE | ROLL_CALL_OK
    assert not everything & (ACCEPT | DECLINE | STOP | START | HELP)
    # "OK" answers a roll call; "OK HOME" says home safe; neither is read as the other
    assert parse("OK").kind == "roll_call_ok" and parse("OK HOME").kind == "home_safe"


def test_every_phrase_is_written_as_the_parser_reads_it_and_holds_no_code() -> None:
    for kind, phrases in SAFETY_SETS.items():
        for phrase in phrases:
            assert " ".join(normalise(phrase)) == phrase, (kind, phrase)
            assert not any(is_reply_code(word) for word in phrase.split()), phrase


decoration = st.sampled_from(["", " ", "!", ".", "  ", "?!", "\n", "...", " :) "])


@settings(max_examples=400)
@given(
    kind_and_phrase=st.sampled_from(
        sorted((kind, phrase) for kind, phrases in SAFETY_SETS.items() for phrase in phrases)
    ),
    before=decoration,
    after=decoration,
    lower=st.booleans(),
    code=st.none() | st.sampled_from(["R7V", "K42", "B0A"]),
)
def test_case_punctuation_and_a_code_do_not_change_the_kind(
    kind_and_phrase: tuple[str, str], before: str, after: str, lower: bool, code: str | None
) -> None:
    kind, phrase = kind_and_phrase
    body = phrase.lower() if lower else phrase
    if code:
        body = f"{body} {code.lower() if lower else code}"
    assert parse(before + body + after) == Reply(kind, code=code)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(
    phrase=st.sampled_from(sorted(EN_ROUTE | ON_SCENE | HOME_SAFE | ROLL_CALL_OK)),
    extra=st.sampled_from(["PLEASE", "NOW", "MAYBE", "X", "THANKS"]),
)
def test_a_phrase_with_more_words_is_never_guessed(phrase: str, extra: str) -> None:
    assert parse(f"{phrase} {extra}").kind == "unknown"


@pytest.mark.parametrize("language", messages.LANGUAGES)
def test_the_loops_texts_exist_in_every_language_and_fit_one_gsm7_segment(language: str) -> None:
    for kind in ("released", "roll_call", "overdue", "stand_down_out"):
        body = messages.follow_up_sms(kind, language=language, title="T" * 60, drill=True)
        assert messages.encoding_of(body).name == "GSM-7", (kind, body)
        assert messages.segments(body) == 1, (kind, len(body), body)
    for name in ("en_route", "home_safe", "roll_call_ok", "help"):
        assert messages.segments(messages.text(language, name)) == 1
    for state in ("en_route", "on_scene", "released", "home_safe"):
        named = messages.text(language, f"state_{state}")
        assert messages.segments(messages.text(language, "already", state=named)) == 1
        assert messages.text(language, "page_status", state=named)
    for button in ("en_route", "on_scene", "roll_call_ok", "home_safe"):
        assert messages.text(language, f"page_{button}")


@pytest.mark.parametrize("language", messages.LANGUAGES)
def test_the_example_words_of_the_code_question_mean_what_they_say(language: str) -> None:
    for kind in SAFETY_SETS:
        word = messages.text(language, f"word_{kind}")
        assert parse(f"{word} R7V") == Reply(kind, code="R7V"), (language, kind, word)  # type: ignore[arg-type]
