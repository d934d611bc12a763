"""What an SMS reply means: a pure parser, no I/O.

Case, accents and surrounding punctuation are ignored. A reply is a keyword, optionally
followed by an ETA in minutes (`YES 15`, `oui 10 min`, `PO 20min`, `yes 1h`), and may
carry an emergency's reply code anywhere (`YES R7V 15`) when the member has several
open alerts (the code's shape is defined once, in `shared.reply_codes`, and no reply
word has it). Anything else is `unknown`: the caller answers with help and keeps the text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from shared.reply_codes import is_reply_code

Kind = Literal["accepted", "declined", "arrived", "stop", "start", "help", "unknown"]

ACCEPT = frozenset({"YES", "Y", "1", "OUI", "SI", "PO", "JA"})
DECLINE = frozenset({"NO", "N", "2", "NON", "JO", "NEIN"})
ARRIVED = frozenset({"ARRIVED", "ONSCENE"})
STOP = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START = frozenset({"START", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})

MAX_ETA_MINUTES = 24 * 60
_ETA = re.compile(r"^(\d{1,4})(MIN|MINS|MINUTE|MINUTES|MINUTI|MINUTA|MINUTEN|MN|M)?$")
_ETA_HOURS = re.compile(r"^(\d{1,2})(H|HR|HRS|HOUR|HOURS|ORE|ORA|ORE|HEURE|HEURES)$")
_UNITS = frozenset({"MIN", "MINS", "MINUTE", "MINUTES", "MINUTI", "MINUTA", "MINUTEN", "MN", "M"})
_HOUR_UNITS = frozenset({"H", "HR", "HRS", "HOUR", "HOURS", "ORE", "ORA", "HEURE", "HEURES"})


__all__ = ["Reply", "is_reply_code", "normalise", "parse"]


@dataclass(frozen=True)
class Reply:
    kind: Kind
    eta_minutes: int | None = None
    code: str | None = None


def normalise(body: str) -> list[str]:
    """Upper-case words without accents or punctuation."""
    decomposed = unicodedata.normalize("NFKD", body)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = re.sub(r"[^0-9A-Za-z]+", " ", plain.upper())
    return plain.split()


def parse(body: str) -> Reply:
    words = normalise(body)
    codes = [w for w in words if is_reply_code(w)]
    words = [w for w in words if not is_reply_code(w)]
    code = codes[0] if len(codes) == 1 else None
    if len(codes) > 1 or not words:
        return Reply("unknown")
    head, rest = words[0], words[1:]
    if head == "ON" and rest[:1] == ["SCENE"]:
        head, rest = "ONSCENE", rest[1:]
    if head in ARRIVED and not rest:
        return Reply("arrived", code=code)
    if head in DECLINE and not rest:
        return Reply("declined", code=code)
    if head in ACCEPT:
        if not rest:
            return Reply("accepted", code=code)
        eta = _eta(rest)
        if eta is not None:
            return Reply("accepted", eta_minutes=eta, code=code)
        return Reply("unknown")
    if not rest and code is None:
        if head in STOP:
            return Reply("stop")
        if head in START:
            return Reply("start")
        if head in HELP:
            return Reply("help")
    return Reply("unknown")


def _eta(words: list[str]) -> int | None:
    """Minutes from `15`, `15 min`, `15min`, `1 h`, `1h`; None if the words say more."""
    minutes: int | None = None
    if len(words) == 1:
        if m := _ETA.match(words[0]):
            minutes = int(m.group(1))
        elif m := _ETA_HOURS.match(words[0]):
            minutes = int(m.group(1)) * 60
    elif len(words) == 2 and words[0].isdigit() and len(words[0]) <= 4:
        if words[1] in _UNITS:
            minutes = int(words[0])
        elif words[1] in _HOUR_UNITS and len(words[0]) <= 2:
            minutes = int(words[0]) * 60
    if minutes is None or minutes > MAX_ETA_MINUTES:
        return None
    return minutes
