"""Issue 12: the after-action report from the console. A coordinator follows the board's
link to the printable report (its styles pass the console's CSP, its two charts drawn on
the server) and downloads the PDF and CSV; an authority follows its summary's link to
the authority's version, which holds no member id, name or phone."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.console.conftest import ConsolePlatform, axe_check, screenshot, sign_in

COORDINATOR = "coord.al@reports.example.org"
AUTHORITY = "authority.al@reports.example.org"
STAFF_PASSWORD = "console tests staff password"
TITLE = "Flash flood, Fier"


def test_reports_from_the_board_and_the_authority_summary(
    platform: ConsolePlatform, page: Page
) -> None:
    api = platform.api
    api.section("AL")
    coordinator = api.bearer(api.account(COORDINATOR, "coordinator", ["AL"]))
    api.account(AUTHORITY, "authority", ["AL"])
    members = [api.member(coordinator, north_m=100.0 * (i + 1)) for i in range(3)]
    api.wait_indexed(members)
    emergency = api.declare(coordinator, title=TITLE, members_needed=2)
    platform.eventually(
        lambda: [bool(platform.sms_to(m.phone)) for m in members], all, "everyone alerted"
    )
    for member in members[:2]:
        api.sms_reply(member.phone, "PO 10")
    platform.eventually(
        lambda: sorted(r["status"] for r in api.board(coordinator, emergency["id"])["rows"]),
        lambda statuses: statuses.count("accepted") == 2,
        "two accepted on the board",
    )

    sign_in(page, platform, COORDINATOR, STAFF_PASSWORD)
    page.goto(f"{platform.console_url}/emergencies/{emergency['id']}")
    # the page's own CSP reports what it blocks: none of the report's styles may be
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    page.click(f"a[href='/reports/{emergency['id']}']")
    expect(page).to_have_url(re.compile(rf"/reports/{emergency['id']}$"))
    expect(page.locator("h1")).to_contain_text(f"After-action report: {TITLE}")
    expect(page.locator("main, body")).to_contain_text("Coordinator's version")
    # print CSS and table styles are in force: the nonce let the <style> through
    collapse = page.evaluate("getComputedStyle(document.querySelector('table')).borderCollapse")
    assert collapse == "collapse", collapse
    # answers drawn (an SVG image made by dispatch); nobody on scene yet
    assert page.locator(".chart img[src^='data:image/svg+xml']").count() == 1
    expect(page.locator("body")).to_contain_text(members[0].id)
    assert not blocked, blocked
    screenshot(page, "report", full_page=True)
    axe_check(page)

    pdf = page.request.get(f"{platform.console_url}/reports/{emergency['id']}.pdf")
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF-"), pdf.status
    table = page.request.get(f"{platform.console_url}/reports/{emergency['id']}.csv")
    assert table.status == 200 and table.text().startswith("part,item,measure,value")
    assert "turnout,all,accepted,2" in table.text()

    # the authority: from its summary page to the authority's version
    page.context.clear_cookies()
    sign_in(page, platform, AUTHORITY, STAFF_PASSWORD)
    page.goto(f"{platform.console_url}/authority/emergencies/{emergency['id']}")
    page.click(f"a[href='/reports/{emergency['id']}']")
    expect(page.locator("h1")).to_contain_text(TITLE)
    expect(page.locator("body")).to_contain_text("Authority's version")
    html = page.content()
    for member in members:
        assert member.id not in html
        assert member.phone not in html and member.phone.lstrip("+") not in html
        assert member.body["full_name"] not in html
    table = page.request.get(f"{platform.console_url}/reports/{emergency['id']}.csv")
    assert table.status == 200
    assert all(m.id not in table.text() and m.phone not in table.text() for m in members)
