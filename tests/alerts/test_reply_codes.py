"""The reply code has one definition (`shared.reply_codes`): every code dispatch draws
is understood by alerts' parser, in any position of a reply, and no word of the reply
vocabulary (answers in every language, STOP/HELP words, numbers, ETAs) is taken for a
code (issue 10, defect 15: dispatch drew `R7V`, the parser knew only `K42`)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts.alerting import reply_code_for
from services.alerts.replies import (
    _HOUR_UNITS,
    _UNITS,
    ACCEPT,
    ARRIVED,
    DECLINE,
    HELP,
    START,
    STOP,
    Kind,
    Reply,
    normalise,
    parse,
)
from shared.reply_codes import (
    ALPHABET,
    CODE_COUNT,
    LENGTH,
    derived_reply_code,
    is_reply_code,
    new_reply_code,
)

#: every word a reply may hold besides a code, and some a member might type
VOCABULARY = sorted(
    ACCEPT
    | DECLINE
    | ARRIVED
    | STOP
    | START
    | HELP
    | _UNITS
    | _HOUR_UNITS
    | {"OK", "SAFE", "ON", "SCENE", "ETA", "COMING", "VIENS", "VENGO", "VIJ", "KOMME"}
)

generated = st.builds(lambda _: new_reply_code(), st.integers()) | st.builds(
    derived_reply_code, st.binary(min_size=1, max_size=32)
)

#: numbers and ETAs as members write them: `15`, `15MIN`, `1H`, `34M`, `4HR`
eta_words = st.one_of(
    st.integers(0, 99999).map(str),
    st.tuples(st.integers(0, 9999), st.sampled_from(sorted(_UNITS))).map(lambda t: f"{t[0]}{t[1]}"),
    st.tuples(st.integers(0, 99), st.sampled_from(sorted(_HOUR_UNITS))).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
)


def test_the_code_dispatch_drew_is_understood() -> None:
    assert parse("YES R7V 10") == Reply("accepted", 10, "R7V")
    assert parse("r7v no") == Reply("declined", None, "R7V")
    # codes alerts derived before the shared definition still work
    assert parse("YES K42 15") == Reply("accepted", 15, "K42")


@settings(max_examples=500)
@given(code=generated)
def test_generated_codes_have_the_shape_and_no_reply_word_does(code: str) -> None:
    assert len(code) == LENGTH and set(code) <= set(ALPHABET)
    assert is_reply_code(code)
    assert code not in VOCABULARY


@settings(max_examples=500)
@given(word=st.sampled_from(VOCABULARY) | eta_words)
def test_no_reply_word_or_number_is_a_code(word: str) -> None:
    assert not is_reply_code(word)


@settings(max_examples=500)
@given(
    code=generated,
    answer=st.sampled_from(sorted(ACCEPT)),
    eta=st.integers(0, 1440),
    unit=st.sampled_from(["", " min", "min", " MINUTI"]),
    where=st.sampled_from(["before", "middle", "after"]),
    lower=st.booleans(),
)
def test_a_reply_with_a_code_is_read_wherever_the_code_stands(
    code: str, answer: str, eta: int, unit: str, where: str, lower: bool
) -> None:
    parts = {
        "before": [code, answer, f"{eta}{unit}"],
        "middle": [answer, code, f"{eta}{unit}"],
        "after": [answer, f"{eta}{unit}", code],
    }[where]
    body = " ".join(parts)
    assert parse(body.lower() if lower else body) == Reply("accepted", eta, code)


@settings(max_examples=300)
@given(code=generated, answer=st.sampled_from(sorted(DECLINE | ARRIVED)))
def test_declines_and_arrivals_carry_the_code(code: str, answer: str) -> None:
    kind: Kind = "declined" if answer in DECLINE else "on_scene"
    assert parse(f"{answer} {code}") == Reply(kind, None, code)
    assert normalise(f"{code}.")[0] == code


@settings(max_examples=200)
@given(emergency_id=st.uuids(), proposed=st.none() | st.text(max_size=6) | generated)
def test_alerts_always_ends_up_with_a_code(emergency_id: uuid.UUID, proposed: str | None) -> None:
    code = reply_code_for(emergency_id, proposed)
    assert is_reply_code(code)
    if proposed is not None and is_reply_code(proposed.strip().upper()):
        assert code == proposed.strip().upper()


def test_the_code_space_is_large_enough() -> None:
    # dispatch keeps codes unique among open emergencies: thousands to draw from
    assert CODE_COUNT == 19 * 168
    assert len({derived_reply_code(uuid.uuid4().bytes) for _ in range(2000)}) > 1200
