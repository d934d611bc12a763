"""The import's faster email check (a plain address from its domain's cached check) gives
exactly what `EmailStr` gives, and a member row gives the same member or the same errors
as `POST /members` would, whatever the address."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import EmailStr, TypeAdapter, ValidationError

from services.members.importing import ImportedMember, plain_email
from services.members.schemas import MemberIn

EMAIL = TypeAdapter(EmailStr)

local_chars = st.sampled_from(list("abcXYZ019.-_+!#$%&'*/=?^`{|}~ \"@()<>,;:\\[]é\u00a0"))
domain_chars = st.sampled_from(list("abcXYZ019.-_é ßİ\u200d"))
domains = st.one_of(
    st.sampled_from(
        [
            "example.org",
            "Example.ORG",
            "mail.example.co.uk",
            "localhost",
            "example",
            "a.invalid",
            "x.test",
            "münchen.de",
            "xn--mnchen-3ya.de",
            "exa_mple.org",
            "-bad.org",
            "ok-.org",
            "a..b.org",
            "[127.0.0.1]",
            "1.2.3.4",
            ("l" * 63 + ".") * 3 + "org",
            "a" * 64 + ".org",
        ]
    ),
    st.text(domain_chars, min_size=0, max_size=20),
    st.text(domain_chars, min_size=1, max_size=8).map(lambda label: f"xn--{label}.org"),
)
locals_ = st.one_of(
    st.sampled_from(["m1", "first.last", "a+tag", "A", ".a", "a.", "a..b", "x" * 64, "x" * 65]),
    st.text(local_chars, min_size=0, max_size=20),
)
addresses = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", locals_, domains),
    st.builds(lambda local, domain: f" {local}@{domain} ", locals_, domains),
    st.builds(lambda local, domain: f"Name <{local}@{domain}>", locals_, domains),
    st.text(max_size=30),
)


def outcome_email(value: str) -> tuple[str, Any]:
    try:
        return "ok", EMAIL.validate_python(value)
    except ValidationError as exc:
        return "error", [(e["type"], e["msg"]) for e in exc.errors()]


@settings(max_examples=1500, deadline=None)
@given(addresses)
@example("m1@example.org")
@example("M.1@EXAMPLE.org")
@example("x" * 64 + "@" + "d" * 60 + "." + "e" * 60 + "." + "f" * 60 + "." + "g" * 60 + ".org")
def test_a_plain_address_is_what_emailstr_makes_of_it(value: str) -> None:
    fast = plain_email(value)
    if fast is not None:
        assert outcome_email(value) == ("ok", fast)


def member_outcome(model: type[MemberIn], body: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", model.model_validate(body).model_dump()
    except ValidationError as exc:
        return "error", [(e["loc"], e["type"], e["msg"]) for e in exc.errors()]


@settings(max_examples=400, deadline=None)
@given(email=addresses, phone=st.sampled_from(["+33612345678", "0612345678", "12"]))
def test_an_imported_row_is_judged_as_post_members_judges_it(email: str, phone: str) -> None:
    body = {"section": "FR", "full_name": "Anne", "phone": phone, "email": email}
    assert member_outcome(ImportedMember, body) == member_outcome(MemberIn, body)


def test_most_rows_share_a_domain_checked_once() -> None:
    assert plain_email("a.b+c@Example.ORG") == "a.b+c@example.org"
    assert plain_email('quoted"@example.org') is None  # the full check words the error
    assert plain_email("someone@localhost") is None
