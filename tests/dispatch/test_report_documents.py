"""The after-action report's documents (services/dispatch/report_documents.py): CSV that
reads back and runs no formula, a page that escapes what users typed and carries its two
charts, a PDF with those charts in it and nothing fetched."""

from __future__ import annotations

import csv
import io
import uuid

from weasyprint import HTML
from weasyprint.urls import URLFetcher

from services.dispatch import report_documents, reports
from tests.dispatch.test_reports import M, at, audit, emergency, facts_of, scenario

HOSTILE = '=HYPERLINK("http://evil.example","x") <script>alert(1)</script>'


def coordinator_report(**changes: object) -> reports.CoordinatorReport:
    return reports.build(emergency(**changes), facts_of(scenario()), audit(), as_of=at(4000))


def test_the_csv_reads_back_and_a_formula_title_is_defused() -> None:
    report = coordinator_report(title=HOSTILE)
    rows = list(csv.DictReader(io.StringIO(report_documents.to_csv(report))))
    cells = {(r["part"], r["item"], r["measure"]): r["value"] for r in rows}
    assert cells[("emergency", "", "title")] == "'" + HOSTILE
    assert cells[("turnout", "all", "on_scene")] == "2"
    assert cells[("figures", "time_to_arrival", "median_s")] == "930.0"
    assert cells[("failures", "opted out (STOP)", "members")] == "1"
    assert cells[("responder", str(M[0]), "on_scene_at")] == "2026-03-01T10:11:10Z"
    assert all(not r["value"].startswith(("=", "@")) for r in rows)


def test_the_page_escapes_the_title_and_has_both_charts() -> None:
    page = report_documents.to_html(coordinator_report(title=HOSTILE))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count('src="data:image/svg+xml;base64,') == 2
    assert "@media print" in page and str(M[0]) in page


def test_the_authority_page_names_nobody_and_draws_only_what_it_may_show() -> None:
    authority = reports.for_authority(coordinator_report(), k=3)
    page = report_documents.to_html(authority)
    text = report_documents.to_csv(authority)
    for member in M:
        assert str(member) not in page and str(member) not in text
    assert "acct-coord" not in page and "30003" not in page
    # answers reach 3 (= k) at minute 3: drawn; arrivals never reach k: no chart
    assert page.count('src="data:image/svg+xml;base64,') == 1
    assert "No arrivals to draw." in page


def test_the_pdf_has_its_pages_and_both_charts() -> None:
    page = report_documents.to_html(coordinator_report())
    assert report_documents.to_pdf(page).startswith(b"%PDF-")
    document = HTML(string=page, url_fetcher=URLFetcher(allowed_protocols={"data"})).render()
    images: list[str] = []

    def walk(box: object) -> None:
        if hasattr(box, "replacement"):
            images.append(type(box.replacement).__name__)
        for child in getattr(box, "children", None) or ():
            walk(child)

    for rendered in document.pages:
        walk(rendered._page_box)
    assert len(document.pages) >= 1
    assert images == ["SVGImage", "SVGImage"]


def test_a_large_emergencys_page_prints_the_first_lines_and_says_so() -> None:
    report = coordinator_report()
    many = [report.responders[0].model_copy(update={"member_id": uuid.uuid4()})
            for _ in range(report_documents.PRINTED_LINES + 7)]  # fmt: skip
    page = report_documents.to_html(report.model_copy(update={"responders": many}))
    assert str(many[report_documents.PRINTED_LINES - 1].member_id) in page
    assert str(many[report_documents.PRINTED_LINES].member_id) not in page
    assert f"The first {report_documents.PRINTED_LINES} of {len(many)} members" in page
    assert str(many[-1].member_id) in report_documents.to_csv(
        report.model_copy(update={"responders": many})
    )
