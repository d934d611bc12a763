"""Admins in the console: sections (create, refuse a bad time zone next to its field,
edit) and staff accounts (create a coordinator, change its sections, disable it: it can
no longer sign in, and the session it had ends); others get 403."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests.console.conftest import STAFF_PASSWORD, ConsolePlatform, axe_check, sign_in


def test_an_admin_manages_sections_and_disables_a_coordinator(
    platform: ConsolePlatform, new_page: Callable[..., Page]
) -> None:
    console = platform.console_url
    admin = new_page()
    sign_in(admin, platform, platform.admin_email, platform.admin_password)

    admin.goto(f"{console}/admin/sections")
    axe_check(admin)
    admin.fill("#code", "ADM")
    admin.fill("#name", "Admin tests")
    admin.fill("#country", "AL")
    admin.fill("#timezone", "Mars/Olympus")
    with admin.expect_navigation():
        admin.click("#create-section")
    expect(admin.locator("#timezone-error")).to_be_visible()
    expect(admin.locator("#timezone")).to_have_attribute("aria-invalid", "true")
    expect(admin.locator("#code")).to_have_value("ADM")
    admin.fill("#timezone", "Europe/Tirane")
    with admin.expect_navigation():
        admin.click("#create-section")
    expect(admin.locator("#sections-table")).to_contain_text("Admin tests")

    admin.goto(f"{console}/admin/sections/ADM")
    admin.fill("#name", "Fier district")
    with admin.expect_navigation():
        admin.click("#save-section")
    expect(admin.locator("#sections-table")).to_contain_text("Fier district")
    section = platform.api.members.get("/sections/ADM", headers=platform.api.admin).json()
    assert (section["name"], section["timezone"]) == ("Fier district", "Europe/Tirane")

    admin.goto(f"{console}/admin/accounts")
    axe_check(admin)
    email = "new.coordinator@example.org"
    admin.fill("#email", email)
    admin.fill("#password", STAFF_PASSWORD)
    admin.select_option("#role", "coordinator")
    with admin.expect_navigation():
        admin.click("#create-account")  # no section: members refuses, next to sections
    expect(admin.locator("#sections-error")).to_be_visible()
    admin.fill("#password", STAFF_PASSWORD)
    admin.check("input[name=sections][value=ADM]")
    with admin.expect_navigation():
        admin.click("#create-account")
    row = admin.locator("#accounts-table tr", has_text=email)
    expect(row).to_contain_text("coordinator")
    expect(row).to_contain_text("ADM")

    # the coordinator signs in, in a browser of their own
    coordinator = new_page()
    sign_in(coordinator, platform, email, STAFF_PASSWORD)
    response = coordinator.goto(f"{console}/members")
    assert response is not None and response.status == 200
    response = coordinator.goto(f"{console}/admin/accounts")
    assert response is not None and response.status == 403

    with admin.expect_navigation():
        row.locator("a").click()
    axe_check(admin)
    with admin.expect_navigation():
        admin.click("#disable-account")
    expect(admin.locator("#accounts-table tr", has_text=email)).to_contain_text("Disabled")

    # the session it had ends at its next page, even one that only calls dispatch (which
    # checks tokens offline); a new sign-in is refused
    coordinator.goto(f"{console}/emergencies")
    expect(coordinator).to_have_url(re.compile(re.escape(f"{console}/login")))
    expect(coordinator.locator("main")).to_contain_text("Your account was disabled or changed")
    refused = new_page()
    refused.goto(f"{console}/login")
    refused.fill("#email", email)
    refused.fill("#password", STAFF_PASSWORD)
    with refused.expect_navigation():
        refused.click("form[action='/login'] button[type=submit]")
    expect(refused.locator("#login-error")).to_be_visible()
    assert refused.url.startswith(f"{console}/login")
    # an admin may not disable their own account
    me = platform.api.members.get("/auth/me", headers=platform.api.admin).json()
    admin.goto(f"{console}/admin/accounts/{me['id']}")
    with admin.expect_navigation():
        admin.click("#disable-account")
    expect(admin.locator(".form-errors")).to_contain_text("your own account")
