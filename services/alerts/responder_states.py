"""Where a member stands on an emergency, and what may move them: pure, no I/O.

An alert's `response` is the member's answer (`accepted`, `standby`, `declined`, none
yet) and then the safety loop: `en_route` → `on_scene` → `released` → `home_safe`.
`arrived`, the name older rows and events gave `on_scene`, reads as `on_scene`.

The loop only goes forward (the board in dispatch orders its rows the same way): a
safety-loop state is recorded only when it is further along than the current one, and
once a member is on the loop a YES or NO no longer moves them (a NO from someone on
scene would put them back among those who never came). Before the loop, answers are
ordered by time as they always were (the caller checks that). `home_safe` follows
only a "yes" or a loop state: a member who never said they would come is not asked to
report coming home. `released` is the coordinator's word, never the member's.
"""

from __future__ import annotations

from typing import Literal

LoopState = Literal["en_route", "on_scene", "released", "home_safe"]
#: what a member can say about themselves (released is set by the coordinator only)
MemberAnswer = Literal["accepted", "declined", "en_route", "on_scene", "home_safe"]
#: the buttons of the answer page, in the order they are shown
Button = Literal["coming", "not_coming", "en_route", "on_scene", "roll_call_ok", "home_safe"]

LOOP: tuple[LoopState, ...] = ("en_route", "on_scene", "released", "home_safe")
_STEP: dict[str, int] = {state: n for n, state in enumerate(LOOP, start=1)}
#: answers that say the member is coming or came (home_safe may follow them)
_CAME = frozenset({"accepted", "standby", *LOOP})


def loop_state(response: str | None) -> str | None:
    """The response as the loop names it (`arrived` → `on_scene`)."""
    return "on_scene" if response == "arrived" else response


def step(response: str | None) -> int:
    """0 before the loop (no answer, accepted, standby, declined), then 1 to 4."""
    return _STEP.get(loop_state(response) or "", 0)


def on_loop(response: str | None) -> bool:
    return step(response) > 0


def in_the_field(response: str | None) -> bool:
    """On the way, on scene or released and not yet home: the loop is not over for them,
    even once the emergency is closed."""
    return 1 <= step(response) < _STEP["home_safe"]


def moves(current: str | None, answer: str) -> bool:
    """Whether `answer` (a member's, or a state a coordinator set) changes the member's
    state from `current`."""
    if answer in ("accepted", "declined"):
        return not on_loop(current)
    if answer not in _STEP and answer != "arrived":
        return False
    if answer == "home_safe" and loop_state(current) not in _CAME:
        return False
    return step(answer) > step(current)


def buttons(response: str | None, *, roll_call_open: bool, closed: bool) -> list[Button]:
    """The answer page's buttons for a member in this state: coming / not coming before
    the loop, then the next steps (the roll call's "I'm OK" first while one is open for
    them),
    and only "home safe" once the emergency is closed and they are still out."""
    state = loop_state(response)
    if closed:
        return ["home_safe"] if in_the_field(state) else []
    if not on_loop(state):
        if state == "accepted":
            return ["en_route", "on_scene", "not_coming"]
        if state == "standby":
            # enough are on the way: they go when called up (then they are accepted)
            return ["not_coming"]
        return ["coming", "not_coming"]
    shown: list[Button] = []
    if roll_call_open:
        shown.append("roll_call_ok")
    if state == "en_route":
        shown.append("on_scene")
    if state == "released":
        shown.append("home_safe")
    return shown
