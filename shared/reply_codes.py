"""The reply code: the short code a member adds to an SMS reply (`YES R7V 10`) to say
which emergency they answer when they have several open alerts.

One definition for both sides: dispatch draws an emergency's code with `new_reply_code`,
alerts writes it in the SMS and its reply parser recognises it with `is_reply_code`.

The shape keeps a code apart from every other word of a reply by construction: a code
is three characters, a letter first, and at least one digit after it. Reply words
(YES, NO, OUI, NON, SI, PO, JA, JO, NEIN, OK, STOP, HELP, ARRIVED...) have no digit,
and numbers and ETAs (`15`, `2`, `34M`, `4HR`, `10MIN`) start with a digit, so no
reply word can be read as a code, whatever language is added later, as long as its
words have no digit. Codes are drawn from an alphabet without 0/O, 1/I, 5/S, 8/B,
2/Z, 6/G: easy to read back and to type on a phone keypad.

Recognition is a little wider than generation (any letter, any digit) so that codes
alerts derived before this definition (a letter and two digits, `K42`) are still
understood in replies to emergencies open across an upgrade.
"""

from __future__ import annotations

import hashlib
import re
import secrets

LETTERS = "ACDEFHJKLMNPRTUVWXY"
DIGITS = "3479"
ALPHABET = LETTERS + DIGITS
LENGTH = 3

#: a letter, then two characters of which at least one is a digit
PATTERN = re.compile(r"^[A-Z](?:[0-9][0-9A-Z]|[A-Z][0-9])$")

#: every two-character tail a generated code may have (at least one digit)
_TAILS = tuple(a + b for a in ALPHABET for b in ALPHABET if a in DIGITS or b in DIGITS)

#: how many different codes `new_reply_code` draws from
CODE_COUNT = len(LETTERS) * len(_TAILS)


def is_reply_code(word: str) -> bool:
    """`word` (upper-case, as the reply parser normalises it) has a reply code's shape."""
    return bool(PATTERN.match(word))


def new_reply_code() -> str:
    """A random code (every one of `CODE_COUNT` equally likely)."""
    return secrets.choice(LETTERS) + secrets.choice(_TAILS)


def derived_reply_code(seed: bytes) -> str:
    """A code derived from `seed` (the same seed always gives the same code): for an
    emergency whose event carries no usable code."""
    n = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") % CODE_COUNT
    return LETTERS[n // len(_TAILS)] + _TAILS[n % len(_TAILS)]
