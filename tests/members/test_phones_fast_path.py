"""The E.164 fast path of services/members/phones.py (issue 9) must never let in a number
the slow path refuses, nor refuse one it accepts: on every input both see, they agree."""

from __future__ import annotations

import phonenumbers
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumberFormat, PhoneNumberType

from services.members.phones import PhoneError, fast_e164_parse, to_e164

_REACHABLE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def _reference(text: str, region: str | None) -> str:
    """The rules before the fast path: `phonenumbers.parse` always, then validity."""
    text = text.strip()
    if not text:
        return "error: a mobile number is required"
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return "error: not a phone number: write it in international form, e.g. +355691234567"
    if not phonenumbers.is_valid_number(number):
        return "error: not a valid phone number for its country"
    if phonenumbers.number_type(number) not in _REACHABLE:
        return "error: not a mobile number: alerts go by SMS"
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _ours(text: str, region: str | None) -> str:
    try:
        return to_e164(text, region)
    except PhoneError as exc:
        return f"error: {exc}"


def _example_e164(region: str, kind: int) -> str | None:
    number = phonenumbers.example_number_for_type(region, kind)
    return None if number is None else phonenumbers.format_number(number, PhoneNumberFormat.E164)


#: real numbers of every region and type (mobile, fixed, toll free...), in E.164
_EXAMPLES = sorted(
    {
        e164
        for region in _REGIONS
        for kind in (
            PhoneNumberType.MOBILE,
            PhoneNumberType.FIXED_LINE,
            PhoneNumberType.TOLL_FREE,
            PhoneNumberType.VOIP,
        )
        if (e164 := _example_e164(region, kind)) is not None
    }
)


@st.composite
def near_real_numbers(draw: st.DrawFn) -> str:
    """An example number, then maybe a digit changed, added, dropped or a 0 inserted
    after the country code: the valid and nearly valid numbers that matter most."""
    digits = list(draw(st.sampled_from(_EXAMPLES))[1:])
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(digits)))
        edit = draw(st.sampled_from(["change", "add", "drop", "zero"]))
        digit = draw(st.sampled_from("0123456789"))
        if edit == "change" and at < len(digits):
            digits[at] = digit
        elif edit == "add":
            digits.insert(at, digit)
        elif edit == "drop" and at < len(digits) and len(digits) > 1:
            del digits[at]
        elif edit == "zero":
            digits.insert(min(at, 3), "0")
    return "+" + "".join(digits)


country_code_and_digits = st.builds(
    lambda cc, rest: f"+{cc}{rest}",
    st.sampled_from(sorted(COUNTRY_CODE_TO_REGION_CODE)),
    st.text("0123456789", max_size=16),
)
phone_like_text = st.text("+0123456789 -()", max_size=20)
inputs = st.one_of(near_real_numbers(), country_code_and_digits, phone_like_text)
regions = st.one_of(st.none(), st.sampled_from(_REGIONS))


@settings(max_examples=3000, deadline=None)
@given(inputs)
@example("+33612345678")
@example("+330612345678")  # a national prefix after the country code: parse strips it
@example("+390612345678")  # an Italian leading zero
@example("+12015550123")
@example("+112015550123")  # NANPA's national prefix 1 after the country code
@example("+5491123456789")  # Argentina's mobile 9 (a national prefix transform rule)
@example("+80012345678")  # a non-geographic country code
def test_the_fast_path_builds_what_parse_builds(text: str) -> None:
    fast = fast_e164_parse(text)
    if fast is not None:
        assert fast == phonenumbers.parse(text, None)


@settings(max_examples=3000, deadline=None)
@given(inputs, regions)
@example("+330612345678", None)
@example("0612345678", "FR")
def test_to_e164_keeps_the_rules_of_the_slow_path(text: str, region: str | None) -> None:
    # twice: the second answer comes from the cache and must be the same
    assert _ours(text, region) == _reference(text, region)
    assert _ours(text, region) == _reference(text, region)


def test_the_fast_path_is_taken_for_plain_e164() -> None:
    """Not a guarantee but the point of it: the common case skips `parse`."""
    taken = [e164 for e164 in _EXAMPLES if fast_e164_parse(e164) is not None]
    assert len(taken) > 0.8 * len(_EXAMPLES)
    assert fast_e164_parse("+33 6 12 34 56 78") is None
