"""Mobile numbers: parsed with `phonenumbers`, stored as E.164 (`+355691234567`)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberType

#: number types an SMS can reach (many countries cannot tell mobile from fixed apart)
_REACHABLE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


class PhoneError(ValueError):
    """The text is not a valid mobile number."""


def to_e164(raw: str, default_region: str | None = None) -> str:
    """Normalise a mobile number to E.164; a number without `+` is read in `default_region`
    (an ISO country code such as `AL`). Raise PhoneError saying what is wrong."""
    text = raw.strip()
    if not text:
        raise PhoneError("a mobile number is required")
    region = default_region.upper() if default_region else None
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        raise PhoneError(
            "not a phone number: write it in international form, e.g. +355691234567"
        ) from exc
    # number_type is UNKNOWN exactly when is_valid_number is false: one lookup, not two
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        raise PhoneError("not a valid phone number for its country")
    if kind not in _REACHABLE:
        raise PhoneError("not a mobile number: alerts go by SMS")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
