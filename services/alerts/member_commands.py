"""What a member's SMS command means (issue 11, self-service): a pure parser, no I/O.

`AWAY` (until `BACK`), `AWAY 3` (days), `AWAY 25/12` (until the next 25 December, day
first as Europeans write it; `25.12` and `25-12` too), `BACK`, `STATUS`, `LINK`, in
English, French, Italian and Albanian. Case, accents and surrounding punctuation are
ignored.

Only a message that starts with one of these words is a command; anything else (`YES 15`,
`SAFE`, `OK HOME`) is left to the reply parser (replies.py), which runs after this one.
`BACK HOME` is not `BACK`: a command word followed by anything it does not take is left
to the replies too, except after `AWAY`, whose argument is checked here, so that `AWAY
99999` or `AWAY 31/02` gets the command's help, never a guess.

No command word is a reply word (YES/NO/OK/SAFE/ARRIVED and their translations) nor has
a digit (so none can be read as a reply code, shared.reply_codes).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

Kind = Literal["away", "back", "status", "link", "invalid"]
#: what was wrong with an `AWAY` argument (the help text says how to write it)
Problem = Literal["away_days", "away_date", "away_form"]

#: the longest absence a member can set by SMS, in days (a date too: at most this far)
MAX_AWAY_DAYS = 366

#: each command's words, with the language the word is in (for an unknown sender's reply)
AWAY: dict[str, str] = {
    "AWAY": "en",
    "ABSENT": "fr",
    "ASSENTE": "it",
    "LARG": "sq",
    "MUNGOJ": "sq",
}
BACK: dict[str, str] = {
    "BACK": "en",
    "RETOUR": "fr",
    "RIENTRO": "it",
    "DISPONIBILE": "it",
    "KTHIM": "sq",
}
STATUS: dict[str, str] = {"STATUS": "en", "STATUT": "fr", "STATO": "it", "GJENDJA": "sq"}
LINK: dict[str, str] = {"LINK": "en", "LIEN": "fr", "COLLEGAMENTO": "it", "LIDHJE": "sq"}

WORDS: dict[str, tuple[Kind, str]] = {
    **{w: ("away", lang) for w, lang in AWAY.items()},
    **{w: ("back", lang) for w, lang in BACK.items()},
    **{w: ("status", lang) for w, lang in STATUS.items()},
    **{w: ("link", lang) for w, lang in LINK.items()},
}

_DAYS = re.compile(r"^\d{1,6}$")
_DAY_MONTH = re.compile(r"^(\d{1,2})[/.\-](\d{1,2})$")
#: "3 days" in the four languages (the unit is optional)
_DAY_UNITS = frozenset({"D", "DAY", "DAYS", "J", "JOUR", "JOURS", "G", "GIORNI", "GIORNO", "DITE"})


@dataclass(frozen=True)
class MemberCommand:
    kind: Kind
    #: the language of the command word (the member's own language wins when known)
    language: str
    #: `AWAY 3`: away for this many days
    days: int | None = None
    #: `AWAY 25/12`: away until this date (available again from its start)
    until: date | None = None
    problem: Problem | None = None


def words_of(body: str) -> list[str]:
    """Upper-case words without accents; punctuation around a word dropped, inside kept
    (a date's `/`)."""
    decomposed = unicodedata.normalize("NFKD", body)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    words = (w.strip(".,;:!?'\"()[]{}_*") for w in plain.split())
    return [w for w in words if w]


def parse(body: str, today: date) -> MemberCommand | None:
    """The command in `body`, or None when it is not one (the reply parser's turn).
    `today` is the member's local date, for `AWAY 25/12`."""
    words = words_of(body)
    if not words or words[0] not in WORDS:
        return None
    kind, language = WORDS[words[0]]
    rest = words[1:]
    if kind != "away":
        return MemberCommand(kind, language) if not rest else None
    if not rest:
        return MemberCommand("away", language)
    return _away(rest, language, today)


def _away(rest: list[str], language: str, today: date) -> MemberCommand:
    invalid = MemberCommand("invalid", language, problem="away_form")
    if len(rest) == 2 and rest[1] in _DAY_UNITS:
        rest = rest[:1]
    if len(rest) != 1:
        return invalid
    arg = rest[0]
    if _DAYS.match(arg):
        days = int(arg)
        if not 1 <= days <= MAX_AWAY_DAYS:
            return MemberCommand("invalid", language, problem="away_days")
        return MemberCommand("away", language, days=days)
    if m := _DAY_MONTH.match(arg):
        until = next_date(int(m.group(1)), int(m.group(2)), today)
        if until is None:
            return MemberCommand("invalid", language, problem="away_date")
        return MemberCommand("away", language, until=until)
    return invalid


def next_date(day: int, month: int, today: date) -> date | None:
    """The next `day`/`month` after `today` (today's own date means next year's), or None
    when no such date exists (31/02) or it is further than MAX_AWAY_DAYS (29/02 in three
    years)."""
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate > today:
            return candidate if candidate - today <= timedelta(days=MAX_AWAY_DAYS) else None
    return None
