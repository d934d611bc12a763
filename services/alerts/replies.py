"""What an SMS reply means: a pure parser, no I/O.

Case, accents and surrounding punctuation are ignored. A reply is a keyword, optionally
followed by an ETA in minutes (`YES 15`, `oui 10 min`, `PO 20min`, `yes 1h`), and may
carry an emergency's reply code anywhere (`YES R7V 15`) when the member has several
open alerts (the code's shape is defined once, in `shared.reply_codes`, and no reply
word has it). Anything else is `unknown`: the caller answers with help and keeps the text.

After accepting, a member reports the safety loop in words (whole phrases, never a
prefix, so `OK` and `OK HOME` cannot be confused): on the way (`en_route`), on scene
(`on_scene`, the old `arrived`), home safe (`home_safe`), and `roll_call_ok`, the answer
to a roll call (whether one is open is the caller's to know: otherwise it gets help).
The phrase lists are in docs/alerts.md; no phrase belongs to two kinds (tested).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from shared.reply_codes import is_reply_code

Kind = Literal[
    "accepted",
    "declined",
    "en_route",
    "on_scene",
    "home_safe",
    "roll_call_ok",
    "stop",
    "start",
    "help",
    "unknown",
]

ACCEPT = frozenset({"YES", "Y", "1", "OUI", "SI", "PO", "JA"})
DECLINE = frozenset({"NO", "N", "2", "NON", "JO", "NEIN"})
STOP = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START = frozenset({"START", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})

# The safety loop's phrases, as `normalise` leaves them (upper case, no accents, an
# apostrophe is a space: D'ACCORD → "D ACCORD"), in en / fr / it / sq / de.
EN_ROUTE = frozenset(
    {
        "EN ROUTE", "ENROUTE", "ON MY WAY", "ON THE WAY",
        "EN CHEMIN", "JE PARS",
        "IN ARRIVO", "PARTITO", "PARTITA", "IN VIAGGIO", "STO ARRIVANDO",
        "NE RRUGE", "JAM NE RRUGE", "JAM RRUGES",
        "UNTERWEGS",
    }
)  # fmt: skip
ON_SCENE = frozenset(
    {
        "ARRIVED", "ON SCENE", "ONSCENE",
        "ARRIVE", "ARRIVEE", "SUR PLACE", "JE SUIS ARRIVE", "JE SUIS ARRIVEE",
        "ARRIVATO", "ARRIVATA", "SUL POSTO", "SONO ARRIVATO", "SONO ARRIVATA",
        "MBERRITA", "MBERRITEM", "NE VEND", "JAM NE VEND",
        "ANGEKOMMEN", "VOR ORT",
    }
)  # fmt: skip
#: the old name of the on-scene words (`arrived` is what events called `on_scene`)
ARRIVED = ON_SCENE
HOME_SAFE = frozenset(
    {
        "SAFE", "HOME SAFE", "SAFE HOME", "OK HOME", "HOME", "AT HOME", "IM HOME", "I M HOME",
        "EN SECURITE", "RENTRE", "RENTREE", "A LA MAISON", "JE SUIS RENTRE",
        "JE SUIS RENTREE",
        "A CASA", "AL SICURO", "RIENTRATO", "RIENTRATA", "SONO A CASA",
        "NE SHTEPI", "JAM NE SHTEPI", "I SIGURT", "E SIGURT",
        "ZUHAUSE", "DAHEIM", "SICHER",
    }
)  # fmt: skip
#: "I am fine", the answer to a roll call (Albanian MIRE, "good", belongs here and not
#: to HOME_SAFE: it answers "are you OK?")
ROLL_CALL_OK = frozenset(
    {
        "OK", "OKAY", "FINE", "IM OK", "I M OK", "ALL OK", "ALL GOOD",
        "D ACCORD", "DACCORD", "CA VA", "TOUT VA BIEN", "BIEN",
        "VA BENE", "STO BENE", "TUTTO BENE", "BENE",
        "MIRE", "JAM MIRE", "NE RREGULL",
        "ALLES OK", "ALLES GUT", "GUT",
    }
)  # fmt: skip
#: phrase → kind for the safety loop (the sets are disjoint: tested)
SAFETY_PHRASES: dict[str, Kind] = {
    **dict.fromkeys(EN_ROUTE, "en_route"),
    **dict.fromkeys(ON_SCENE, "on_scene"),
    **dict.fromkeys(HOME_SAFE, "home_safe"),
    **dict.fromkeys(ROLL_CALL_OK, "roll_call_ok"),
}

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
    phrase = " ".join(words)
    if phrase in SAFETY_PHRASES:
        return Reply(SAFETY_PHRASES[phrase], code=code)
    head, rest = words[0], words[1:]
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
