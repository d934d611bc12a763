"""Coordinators see the members whose qualifications expire soon (issue 11, qualification
expiry): the members page's "Qualification expiring" filter lists, within 60 days, the
member expiring in 45 days and not those expiring later, already expired or never; in
French too; a coordinator of another section sees none of them (the members API checks
the role and sections as for every member route)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from playwright.sync_api import Page, expect

from tests.console.conftest import STAFF_PASSWORD, ConsolePlatform, axe_check, sign_in

SECTION = "EXP"


def test_members_with_qualifications_expiring_within_60_days(
    platform: ConsolePlatform, new_page: Callable[..., Page]
) -> None:
    api = platform.api
    api.section(SECTION, name="Expiry", country="AL", timezone="Europe/Tirane", language="sq")
    api.section("AL")
    email = api.account("expiry.coordinator@example.org", "coordinator", [SECTION])
    outsider = api.account("expiry.outsider@example.org", "coordinator", ["AL"])
    staff = api.bearer(email)
    today = date.today()

    def held(days: int | None) -> list[dict[str, str | None]]:
        expires = (today + timedelta(days=days)).isoformat() if days is not None else None
        return [{"code": "FIRST_AID", "expires_at": expires}]

    api.member(staff, section=SECTION, full_name="Soon Sokoli", qualifications=held(45))
    api.member(staff, section=SECTION, full_name="Later Lika", qualifications=held(90))
    api.member(staff, section=SECTION, full_name="Past Prifti", qualifications=held(-1))
    api.member(staff, section=SECTION, full_name="Never Noka", qualifications=held(None))

    page = new_page()
    sign_in(page, platform, email, STAFF_PASSWORD)
    page.goto(f"{platform.console_url}/members?section={SECTION}")
    expect(page.locator("#members-count")).to_contain_text("of 4")
    page.select_option("#f-expiring", "60")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Soon Sokoli")
    axe_check(page)
    page.select_option("#f-expiring", "90")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    expect(page.locator("table tbody tr")).to_have_count(2)

    french = new_page(locale="fr-FR")
    sign_in(french, platform, email, STAFF_PASSWORD)
    french.goto(f"{platform.console_url}/members?section={SECTION}&expiring=60")
    expect(french.locator("label[for=f-expiring]")).to_have_text("Qualification expirant")
    expect(french.locator("#f-expiring option:checked")).to_have_text("dans les 60 jours")
    expect(french.locator("table tbody tr")).to_have_count(1)

    # the API behind it: another section's coordinator sees none of them
    mine = api.members.get(
        "/members", params={"expiring_within_days": 60, "section": SECTION}, headers=staff
    )
    assert mine.status_code == 200 and mine.json()["total"] == 1
    theirs = api.members.get(
        "/members",
        params={"expiring_within_days": 60, "section": SECTION},
        headers=api.bearer(outsider),
    )
    assert theirs.status_code in (200, 403) and (
        theirs.status_code == 403 or theirs.json()["total"] == 0
    )
    other = new_page()
    sign_in(other, platform, outsider, STAFF_PASSWORD)
    other.goto(f"{platform.console_url}/members?section={SECTION}&expiring=60")
    expect(other.locator("#members-count")).to_contain_text("No members")
