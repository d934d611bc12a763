"""An after-action report as documents: CSV, a printable HTML page with its charts, PDF.

Charts are drawn by matplotlib on the server (the Agg backend through `Figure`, never
pyplot's global state, so two requests can draw at once) as SVG, put in the page as
`<img src="data:image/svg+xml;base64,...">`: the page is one self-contained file that
prints, saves and converts to PDF without fetching anything, and an image's SVG keeps
its own style attributes, which a strict Content-Security-Policy (the console's) would
refuse inline. WeasyPrint turns the same page into a PDF, with a URL fetcher that reads
`data:` URLs only: a report's text comes partly from users (the title) and must not
make the service reach out anywhere.

CPU-bound (drawing, PDF layout): callers run these in a worker thread.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from services.dispatch.reports import AuthorityReport, CoordinatorReport

# `Figure` draws without pyplot; Agg for anything that might still ask for a backend on
# a server with no display
matplotlib.use("Agg")

Report = CoordinatorReport | AuthorityReport
#: timeline entries and responder lines the printable page (and so the PDF) shows: a
#: large emergency's thousands of lines would make a PDF of hundreds of pages that takes
#: minutes to lay out; the CSV and JSON carry every line
PRINTED_LINES = 500
CSV_HEADER = ("part", "item", "measure", "value")

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def csv_rows(report: Report) -> Iterator[tuple[str, str, str, str]]:
    """The report as (part, item, measure, value) lines: one long table, so every part
    of the report (figures, timeline, one line per responder) fits one CSV file that a
    spreadsheet can pivot."""
    header = report.emergency.model_dump(mode="json")
    for name, value in header.items():
        yield ("emergency", "", name, _text("+".join(value) if isinstance(value, list) else value))
    for position, entry in enumerate(report.timeline, 1):
        for name, value in entry.model_dump(mode="json", exclude_none=True).items():
            yield ("timeline", str(position), name, _text(value))
    for part in ("time_to_first_answer", "time_to_arrival"):
        for name, value in getattr(report, part).model_dump(mode="json").items():
            yield ("figures", part, name, _text(value))
    turnout = report.turnout if isinstance(report.turnout, dict) else report.turnout.model_dump()
    for name, value in turnout.items():
        yield ("turnout", "all", name, _text(value))
    yield ("turnout", "all", "arrived_share", _text(report.arrived_share))
    for part in ("by_section", "by_qualification", "answers_by_channel"):
        for item, counts in getattr(report, part).items():
            values = counts if isinstance(counts, dict) else counts.model_dump()
            for name, value in values.items():
                yield (part, item, name, _text(value))
    failures = report.failures
    if isinstance(failures, dict):
        for name, value in failures.items():
            yield ("failures", "all", name, _text(value))
    else:
        yield ("failures", "all", "failed", _text(failures.failed))
        yield ("failures", "all", "opted_out", _text(failures.opted_out))
        for reason, count in failures.reasons.items():
            yield ("failures", reason, "members", _text(count))
    for position, action in enumerate(report.staff_actions, 1):
        for name, value in action.model_dump(mode="json", exclude_none=True).items():
            yield ("staff_actions", str(position), name, _text(value))
    for part in ("answers_cumulative", "arrivals_cumulative"):
        for minute, count in getattr(report, part).items():
            yield (part, str(minute), "members", _text(count))
    if isinstance(report, CoordinatorReport):
        for line in report.responders:
            values = line.model_dump(mode="json")
            member = values.pop("member_id")
            for name, value in values.items():
                text = "+".join(value) if isinstance(value, list) else _text(value)
                yield ("responder", member, name, text)


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(_safe(row) for row in csv_rows(report))
    return out.getvalue()


def _safe(row: tuple[str, ...]) -> tuple[str, ...]:
    """A cell a spreadsheet would run as a formula (=, +, -, @ first) is quoted with a
    leading apostrophe (OWASP's CSV injection advice): titles and reasons come from
    outside. Numbers, negative ones too, are left as they are."""
    out = []
    for cell in row:
        if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(cell):
            cell = "'" + cell
        out.append(cell)
    return tuple(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def chart_svg(
    title: str, series: dict[int, int], y_label: str, salt: str, *, complete: bool
) -> str | None:
    """A step chart of a cumulative count by minute, as an SVG `data:` URL (None: nothing
    to draw). `complete`: the series holds every point, so it starts from 0; the
    authority's starts where it reaches k, and what came before is left blank, not drawn
    as 0."""
    if not series:
        return None
    minutes, counts = list(series), list(series.values())
    if complete:
        minutes, counts = [0, *minutes], [0, *counts]
    # a count holds until the end of its minute: the last step is drawn that wide, so
    # answers all in the first minute still show as a step, not a line at x = 0
    minutes, counts = [*minutes, minutes[-1] + 1], [*counts, counts[-1]]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure = Figure(figsize=(6.4, 2.6), dpi=100)
        axes = figure.subplots()
        axes.step(minutes, counts, where="post", color="#1f4e79", linewidth=2)
        axes.set_title(title, fontsize=11)
        axes.set_xlabel("minutes after the first SMS")
        axes.set_ylabel(y_label)
        axes.set_ylim(bottom=0)
        axes.set_xlim(left=0)
        axes.grid(alpha=0.3)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue().encode()).decode()


def charts(report: Report) -> dict[str, str | None]:
    complete = isinstance(report, CoordinatorReport)
    return {
        "answers": chart_svg(
            "Answers over time",
            report.answers_cumulative,
            "members answered",
            "answers",
            complete=complete,
        ),
        "arrivals": chart_svg(
            "Arrivals on scene",
            report.arrivals_cumulative,
            "members on scene",
            "arrivals",
            complete=complete,
        ),
    }


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def to_html(report: Report) -> str:
    template = _templates.get_template("report.html")
    turnout = report.turnout if isinstance(report.turnout, dict) else report.turnout.model_dump()
    failures: dict[str, Any]
    if isinstance(report, CoordinatorReport):
        failures = {"failed": report.failures.failed, "opted_out": report.failures.opted_out}
        reasons = report.failures.reasons
    else:
        failures, reasons = report.failures, {}
    return template.render(
        report=report,
        coordinator=isinstance(report, CoordinatorReport),
        turnout=turnout,
        failures=failures,
        reasons=reasons,
        by_qualification={
            q: (v if isinstance(v, dict) else v.model_dump())
            for q, v in report.by_qualification.items()
        },
        by_section={
            s: (v if isinstance(v, dict) else v.model_dump()) for s, v in report.by_section.items()
        },
        by_channel={
            c: (v if isinstance(v, dict) else v.model_dump())
            for c, v in report.answers_by_channel.items()
        },
        charts=charts(report),
        minutes=_minutes,
        printed_lines=PRINTED_LINES,
    )


def to_pdf(html: str) -> bytes:
    # imported here: it loads pango, which nothing else needs
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # the charts are data: URLs; anything else (http, file) is refused
    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    pdf: bytes = HTML(string=html, url_fetcher=fetcher).write_pdf()
    return pdf
