"""Mobile numbers: parsed with `phonenumbers`, stored as E.164 (`+355691234567`).

Speed (issue 9: a CSV import validates tens of thousands of numbers, and
`phonenumbers.parse` was most of its time): most numbers already arrive in E.164, and
for those `parse`'s search for a number in free text (punctuation, extensions, RFC 3966,
vanity letters) finds nothing to do. `fast_e164_parse` builds the same `PhoneNumber`
directly and hands anything it is not sure of to `parse`; the validity rules after
parsing (`number_type`, i.e. `is_valid_number`, and mobile or not) are the same for both.
tests/members/test_phones_fast_path.py checks with hypothesis that both paths agree.
Results are also cached by (text, region): a corrected file is often imported again.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, PhoneNumberType
from phonenumbers.phonenumberutil import region_code_for_country_code

#: number types an SMS can reach (many countries cannot tell mobile from fixed apart)
_REACHABLE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
#: `+`, a country code (no leading 0) and digits, at most 15 in all (ITU E.164)
_E164_SHAPE = re.compile(r"\+[1-9][0-9]{1,14}")
#: `parse`'s bounds on the national significant number
_NSN_MIN, _NSN_MAX = 2, 17
#: distinct (text, region) results kept: the largest import (MUSTER_IMPORT_MAX_ROWS)
_CACHE_SIZE = 50_000


class PhoneError(ValueError):
    """The text is not a valid mobile number."""


@functools.cache
def _national_prefix(country_code: int) -> re.Pattern[str] | None:
    """The country's national prefix pattern `parse` strips, None when it has none."""
    region = region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return re.compile("")  # unknown metadata: matches anything, i.e. ask `parse`
    pattern = metadata.national_prefix_for_parsing
    return re.compile(pattern) if pattern else None


def fast_e164_parse(text: str) -> phonenumbers.PhoneNumber | None:
    """`phonenumbers.parse(text)` for text already in plain E.164, or None when the text
    is not that simple (then `parse` decides): not `+` and digits, an unknown country
    code, a national number starting with 0 (Italian leading zeros, a national prefix
    written after the country code) or with the country's national prefix (which
    `parse` may strip)."""
    if _E164_SHAPE.fullmatch(text) is None:
        return None
    digits = text[1:]
    for length in (1, 2, 3):
        country_code = int(digits[:length])
        if country_code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[length:]
    if not _NSN_MIN <= len(national) <= _NSN_MAX or national.startswith("0"):
        return None
    prefix = _national_prefix(country_code)
    if prefix is not None and prefix.match(national):
        return None
    return phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber:
    if text.startswith("+"):
        fast = fast_e164_parse(text)
        if fast is not None:
            return fast
    try:
        return phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException as exc:
        raise PhoneError(
            "not a phone number: write it in international form, e.g. +355691234567"
        ) from exc


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _checked(text: str, region: str | None) -> tuple[str | None, str | None]:
    """(E.164, None) or (None, why not): cached, so a PhoneError is cached as its reason."""
    try:
        number = _parse(text, region)
    except PhoneError as exc:
        return None, str(exc)
    # number_type is UNKNOWN exactly when is_valid_number is false: one lookup, not two
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        return None, "not a valid phone number for its country"
    if kind not in _REACHABLE:
        return None, "not a mobile number: alerts go by SMS"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def to_e164(raw: str, default_region: str | None = None) -> str:
    """Normalise a mobile number to E.164; a number without `+` is read in `default_region`
    (an ISO country code such as `AL`). Raise PhoneError saying what is wrong."""
    text = raw.strip()
    if not text:
        raise PhoneError("a mobile number is required")
    e164, reason = _checked(text, default_region.upper() if default_region else None)
    if e164 is None:
        raise PhoneError(reason)
    return e164
