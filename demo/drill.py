"""A drill in Fier: declared by the AL coordinator, answered over the signed SMS webhook
by the members the board shows alerted, watched live in the terminal."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from demo import dataset
from demo.answers import PlannedAnswer, plan
from demo.apis import Apis, DemoError

TITLE_PREFIX = "Drill: flooding on the Gjanica river, Fier"
RADIUS_M = 4000
#: board statuses in the order a coordinator reads them
STATUSES = (
    "notified", "delivered", "accepted", "standby", "declined", "no_answer", "stood_down",
    "arrived", "failed",
)  # fmt: skip
FIRST_ROWS_WAIT_S = 90.0
SETTLE_S = 30.0


def close_earlier_drills(apis: Apis, coordinator: dict[str, str], out: Console) -> None:
    """A drill of an earlier run still open would make members' replies ambiguous."""
    listed = apis.dispatch.get(
        "/emergencies", params={"section": "AL", "status": "active"}, headers=coordinator
    )
    for emergency in apis.expect(listed, 200):
        if emergency["drill"] and emergency["title"].startswith(TITLE_PREFIX):
            closed = apis.dispatch.post(
                f"/emergencies/{emergency['id']}/close",
                json={"note": "a new demo drill replaces it"},
                headers=coordinator,
            )
            apis.expect(closed, 200)
            out.print(f"closed the previous demo drill {emergency['id']}")


def declare(
    apis: Apis,
    coordinator: dict[str, str],
    second_coordinator: dict[str, str],
    total: int,
    out: Console,
) -> dict[str, Any]:
    local = datetime.now(ZoneInfo("Europe/Tirane")).strftime("%H:%M")
    body = {
        "section": "AL",
        "title": f"{TITLE_PREFIX} ({local})",
        "description": (
            "EXERCISE. The Gjanica is over its banks south of the centre. First aiders: "
            "meet at the Loni Papuçiu stadium, bring high-visibility vests."
        ),
        "category": "Rescue",
        "severity": "Severe",
        "urgency": "Immediate",
        "drill": True,
        "area": {"lat": dataset.FIER.lat, "lon": dataset.FIER.lon, "radius_m": RADIUS_M},
        "required_qualifications": ["FIRST_AID"],
        "members_needed": dataset.members_needed(total),
    }
    emergency: dict[str, Any] = apis.expect(
        apis.dispatch.post("/emergencies", json=body, headers=coordinator), 201
    )
    out.print(
        f"declared [bold]{emergency['title']}[/bold] (drill, {RADIUS_M / 1000:g} km around "
        f"Fier, {emergency['members_needed']} first aiders needed, reply code "
        f"{emergency['reply_code']})"
    )
    if emergency["status"] == "pending_approval":
        # the two-person rule held it: the second AL coordinator approves
        # approval names the version the approver saw (a later edit needs a new one)
        approved = apis.dispatch.post(
            f"/emergencies/{emergency['id']}/approve",
            json={"version": emergency["version"]},
            headers=second_coordinator,
        )
        emergency = apis.expect(approved, 200)
        out.print("held for approval (two-person rule): approved by the second coordinator")
    return emergency


def _view(counts: Counter[str], progress: Progress, elapsed: float) -> Group:
    table = Table(title=f"live board ({elapsed:.0f} s)", title_justify="left")
    table.add_column("alerted", justify="right")
    for status in STATUSES:
        if counts.get(status) or status in ("accepted", "declined"):
            table.add_column(status.replace("_", " "), justify="right")
    values = [str(sum(counts.values()))]
    values += [
        str(counts.get(s, 0)) for s in STATUSES if counts.get(s) or s in ("accepted", "declined")
    ]
    table.add_row(*values)
    return Group(progress, table)


def simulate_answers(
    apis: Apis,
    coordinator: dict[str, str],
    emergency: dict[str, Any],
    members_by_id: dict[str, dict[str, Any]],
    out: Console,
) -> dict[str, Any]:
    """Answer as the alerted members would, each at their planned moment; return the
    last board seen."""
    window = apis.settings.answer_window_s
    emergency_id = emergency["id"]
    planned: dict[str, tuple[PlannedAnswer, float]] = {}
    answered: set[str] = set()
    progress = Progress(
        TextColumn("members answering"), BarColumn(), MofNCompleteColumn(), console=out
    )
    task = progress.add_task("answers", total=0)
    start = time.monotonic()
    last_new_row = start
    board: dict[str, Any] = {"rows": []}
    with Live(_view(Counter(), progress, 0), console=out, refresh_per_second=4) as live:
        while True:
            now = time.monotonic()
            board = apis.expect(
                apis.dispatch.get(f"/emergencies/{emergency_id}/board", headers=coordinator), 200
            )
            for row in board["rows"]:
                member_id = str(row["member_id"])
                if member_id not in planned:
                    answer = plan(member_id, window, seed=emergency_id)
                    planned[member_id] = (answer, now + answer.delay_s)
                    last_new_row = now
                    if answer.outcome != "silent":
                        progress.update(task, total=(progress.tasks[0].total or 0) + 1)
            for member_id, (answer, due) in planned.items():
                if member_id in answered or due > now or answer.outcome == "silent":
                    continue
                member = members_by_id.get(member_id) or _member(apis, coordinator, member_id)
                text = answer.sms_text(member["language"])
                if text:
                    apis.sms_from(member["phone"], text)
                answered.add(member_id)
                progress.advance(task)
            counts = Counter(str(r["status"]) for r in board["rows"])
            live.update(_view(counts, progress, now - start))
            if not planned and now - start > FIRST_ROWS_WAIT_S:
                raise DemoError(
                    f"nobody was alerted within {FIRST_ROWS_WAIT_S:.0f} s: look at "
                    ".local/logs/alerts.log and .local/logs/dispatch.log"
                )
            pending = [
                m for m, (a, _) in planned.items() if a.outcome != "silent" and m not in answered
            ]
            shown = {str(r["member_id"]): r["status"] for r in board["rows"]}
            unseen = [m for m in answered if shown.get(m) in ("notified", "delivered")]
            quiet_board = now - last_new_row > 5.0
            if planned and not pending and not unseen and quiet_board:
                break
            if planned and now - start > window + SETTLE_S:
                break
            time.sleep(0.5)
    out.print()
    return board


def _member(apis: Apis, staff: dict[str, str], member_id: str) -> dict[str, Any]:
    found: dict[str, Any] = apis.expect(
        apis.members.get(f"/members/{member_id}", headers=staff), 200
    )
    return found


def summary_table(summary: dict[str, Any]) -> Table:
    """The authority's view: counts and ETA bands, no names, phones or member ids."""
    table = Table(title="authority summary (GET /emergencies/{id}/summary)", title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("needed", str(summary["needed"]))
    for status in STATUSES:
        if status in summary["counts"]:
            table.add_row(status.replace("_", " "), str(summary["counts"][status]))
    for band, count in summary.get("eta_bands", {}).items():
        table.add_row(f"ETA {band} min" if band[0].isdigit() else f"ETA {band}", str(count))
    first = summary.get("first_accept_seconds")
    if first is not None:
        table.add_row("first yes after", f"{first:.0f} s")
    return table
