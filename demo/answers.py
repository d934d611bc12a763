"""How the simulated members answer a drill: a pure plan, no I/O.

Each alerted member gets one outcome drawn from their id (so it does not depend on the
order rows reach the board): about half say yes with an ETA, a quarter say no, the rest
never answer. Answers come within the window, most of them early, as real replies do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["yes", "no", "silent"]
YES_SHARE = 0.5
NO_SHARE = 0.25
#: per language: the word for yes and for no (the alerts service reads them all)
WORDS = {"sq": ("PO", "JO"), "it": ("SI", "NO"), "fr": ("OUI", "NON"), "en": ("YES", "NO")}


@dataclass(frozen=True)
class PlannedAnswer:
    member_id: str
    outcome: Outcome
    #: seconds after the member appeared on the board
    delay_s: float
    eta_minutes: int | None

    def sms_text(self, language: str) -> str | None:
        """The SMS the member sends. Without the emergency's reply code: the demo closes its
        earlier drill first, so each member has one open alert and the plain word is enough."""
        yes, no = WORDS.get(language, WORDS["en"])
        if self.outcome == "yes":
            return f"{yes} {self.eta_minutes}"
        if self.outcome == "no":
            return no
        return None


def plan(member_id: str, window_s: float, seed: str = "") -> PlannedAnswer:
    rng = random.Random(f"{seed}:{member_id}")
    roll = rng.random()
    outcome: Outcome = (
        "yes" if roll < YES_SHARE else "no" if roll < YES_SHARE + NO_SHARE else "silent"
    )
    # most answers early: an exponential delay with a mean of a quarter of the window
    delay = min(rng.expovariate(4.0 / window_s), window_s * 0.95)
    eta = rng.choice((5, 8, 10, 12, 15, 15, 20, 25, 30, 40)) if outcome == "yes" else None
    return PlannedAnswer(member_id, outcome, round(max(delay, 0.5), 2), eta)
