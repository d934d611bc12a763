"""bench.answers matches each answer sent to the board's row event that showed it
(`shown_by`): pure, against a model of the board applying one member's answers in order,
folding any run of them into one row change, with repeated events (a reconnect's
snapshot)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from bench.answers import Seen, Sent, shown_by

#: seconds between two answers of one member (N / R in the benchmark)
SPACING = 2.0


@st.composite
def member_history(draw: st.DrawFn, member: int) -> tuple[list[Sent], list[Seen], list[int]]:
    """One member's answers, alternating yes / no SPACING apart, each recorded by alerts
    within twice that (the rule's stated bound), in order; the board applies them in
    batches of consecutive answers, one row event per batch, repeated at random.
    Returns the sends, the events and, per send, the index of its batch's first event."""
    count = draw(st.integers(1, 12))
    first_yes = draw(st.booleans())
    sends: list[Sent] = []
    recorded: list[float] = []
    for k in range(count):
        sent_at = 100.0 + k * SPACING
        delay = draw(st.floats(0.001, 2 * SPACING - 0.001))
        # alerts records one member's answers in order (the row's lock, responded_at)
        at = max(sent_at + delay, (recorded[-1] + 0.001) if recorded else 0.0)
        if at - sent_at >= 2 * SPACING:
            at = sent_at + 2 * SPACING - 0.0005
        recorded.append(at)
        yes = first_yes if k % 2 == 0 else not first_yes
        sends.append(Sent(member * 1000 + k, member, "sms", yes, sent_at, 200, at))
    cuts = sorted(draw(st.sets(st.integers(1, count - 1), max_size=count - 1))) if count > 1 else []
    bounds = [0, *cuts, count]
    events: list[Seen] = []
    batch_of: list[int] = []
    arrival = 0.0
    for start, end in itertools.pairwise(bounds):
        last = end - 1
        arrival = max(arrival, recorded[last]) + draw(st.floats(0.0005, 5.0))
        event = Seen(member, sends[last].yes, f"{member}-{last}", recorded[last], arrival)
        batch_of.extend([len(events)] * (end - start))
        events.append(event)
        if draw(st.booleans()):
            arrival += 0.0001
            events.append(Seen(member, event.yes, event.answered_at, event.answered, arrival))
    return sends, events, batch_of


@given(st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True).flatmap(
    lambda members: st.tuples(*(member_history(m) for m in members))
))  # fmt: skip
def test_each_answer_is_matched_to_the_event_of_the_batch_that_applied_it(
    histories: tuple[tuple[list[Sent], list[Seen], list[int]], ...],
) -> None:
    sent = [s for sends, _, _ in histories for s in sends]
    seen = [e for _, events, _ in histories for e in events]
    shown = shown_by(sent, seen)
    for sends, events, batch_of in histories:
        for item, batch in zip(sends, batch_of, strict=True):
            assert shown[item.index] == events[batch]


def test_an_answer_refused_or_never_shown_is_not_matched() -> None:
    sent = [
        Sent(0, 0, "web", True, 1.0, 503, 2.0),
        Sent(1, 0, "web", False, 3.0, 200, 3.5),
        Sent(2, 0, "sms", True, 5.0, 200, 5.5),
    ]
    seen = [Seen(0, False, "a", 3.2, 4.0)]
    assert shown_by(sent, seen) == {1: seen[0]}
