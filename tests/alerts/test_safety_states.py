"""The safety loop's states (pure): forward only, answers frozen once on the loop, home
safe only after coming, the page's buttons per state."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts.responder_states import LOOP, buttons, in_the_field, moves, step

RESPONSES = [None, "accepted", "standby", "declined", "arrived", *LOOP]
ANSWERS = ["accepted", "declined", "en_route", "on_scene", "released", "home_safe", "arrived"]


def test_the_ladder() -> None:
    assert [step(s) for s in (None, "accepted", "declined", *LOOP)] == [0, 0, 0, 1, 2, 3, 4]
    assert step("arrived") == step("on_scene")  # the old name reads as the new
    assert moves("accepted", "en_route") and moves("en_route", "on_scene")
    assert moves("on_scene", "released") and moves("released", "home_safe")
    assert moves("accepted", "home_safe")  # a member may skip steps forward
    assert moves(None, "on_scene")  # one who just turns up is on scene
    assert not moves("on_scene", "en_route") and not moves("home_safe", "released")
    assert not moves("arrived", "on_scene")
    assert not moves("on_scene", "declined") and not moves("en_route", "accepted")
    assert not moves(None, "home_safe") and not moves("declined", "home_safe")
    assert moves("accepted", "declined") and moves("declined", "accepted")  # minds change


@settings(max_examples=500)
@given(st.sampled_from(RESPONSES), st.lists(st.sampled_from(ANSWERS), max_size=12))
def test_never_back_once_on_the_loop(start: str | None, answers: list[str]) -> None:
    current = start
    for answer in answers:
        before = step(current)
        if moves(current, answer):
            current = answer
            assert step(current) > before or before == 0
        assert step(current) >= before


@given(st.sampled_from(RESPONSES), st.sampled_from(ANSWERS))
def test_moving_is_idempotent(current: str | None, answer: str) -> None:
    if moves(current, answer):
        assert not moves(answer, answer) or answer in ("accepted", "declined")


@given(st.sampled_from(RESPONSES), st.booleans(), st.booleans())
def test_every_button_shown_moves_the_member(
    response: str | None, roll_call_open: bool, closed: bool
) -> None:
    shown = buttons(response, roll_call_open=roll_call_open, closed=closed)
    for button in shown:
        if button == "roll_call_ok":
            assert roll_call_open and not closed
            continue
        answer = {"coming": "accepted", "not_coming": "declined"}.get(button, button)
        assert moves(response, answer), (response, button)
    if closed:
        assert shown == (["home_safe"] if in_the_field(response) else [])


def test_buttons_follow_the_state() -> None:
    assert buttons(None, roll_call_open=False, closed=False) == ["coming", "not_coming"]
    assert buttons("accepted", roll_call_open=False, closed=False) == [
        "en_route",
        "on_scene",
        "not_coming",
    ]
    assert buttons("standby", roll_call_open=False, closed=False) == ["not_coming"]
    assert buttons("en_route", roll_call_open=False, closed=False) == ["on_scene"]
    assert buttons("on_scene", roll_call_open=True, closed=False) == ["roll_call_ok"]
    assert buttons("arrived", roll_call_open=False, closed=False) == []
    assert buttons("released", roll_call_open=False, closed=False) == ["home_safe"]
    assert buttons("released", roll_call_open=False, closed=True) == ["home_safe"]
    assert buttons("home_safe", roll_call_open=False, closed=False) == []
    assert buttons("accepted", roll_call_open=False, closed=True) == []
