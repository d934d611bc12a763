"""The harness itself: the console, started with the services it calls, serves a sign-in
page Chromium renders, that passes the accessibility check, and that signs the bootstrap
admin in; a member's signed SMS reaches the board through the local Twilio server."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import ConsolePlatform, axe_check, screenshot, sign_in


def test_sign_in_page_renders_passes_axe_and_signs_the_admin_in(
    platform: ConsolePlatform, page: Page
) -> None:
    page.goto(f"{platform.console_url}/login")
    expect(page.locator("h1")).to_have_text("Sign in")
    expect(page.locator("#email")).to_be_visible()
    axe_check(page)
    screenshot(page, "sign-in")

    sign_in(page, platform, platform.admin_email, platform.admin_password)
    expect(page.locator("body")).to_contain_text(platform.admin_email)


def test_a_signed_sms_answer_reaches_the_board(platform: ConsolePlatform) -> None:
    api = platform.api
    api.section("AL")
    coordinator = api.bearer(api.account("harness.al@example.org", "coordinator", ["AL"]))
    member = api.member(coordinator)
    api.wait_indexed([member])
    emergency = api.declare(coordinator, members_needed=1)
    platform.eventually(lambda: platform.sms_to(member.phone), bool, "the member got the alert")

    reply = api.sms_reply(member.phone, "PO 10")

    assert "10 min" in reply, reply
    board = platform.eventually(
        lambda: api.board(coordinator, emergency["id"]),
        lambda b: [r["status"] for r in b["rows"]] == ["accepted"],
        "the board shows the member accepted",
    )
    assert board["rows"][0]["eta_minutes"] == 10
