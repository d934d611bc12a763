"""Sections, staff accounts and members, created through the members API only when
missing, so a second run changes nothing."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from demo import dataset
from demo.apis import Apis, DemoError


@dataclass(frozen=True)
class Account:
    key: str
    email: str
    role: str
    sections: tuple[str, ...]
    what: str


ACCOUNTS = (
    Account("admin", "demo.admin@muster.example", "admin", (), "admin: sections and staff"),
    Account(
        "coordinator", "coordinator.al@muster.example", "coordinator", ("AL",),
        "coordinator of AL: declares, watches the board",
    ),
    Account(
        "coordinator2", "coordinator2.al@muster.example", "coordinator", ("AL",),
        "second AL coordinator: approves large emergencies (two-person rule)",
    ),
    Account(
        "authority", "authority.al@muster.example", "authority", ("AL",),
        "authority for AL: summaries only",
    ),
)  # fmt: skip


def account_passwords(path: Path) -> dict[str, str]:
    """The demo accounts' passwords: generated on the first run and kept in `path` (mode
    600, under .local/, never committed), so every run prints and uses the same ones."""
    stored: dict[str, str] = {}
    if path.is_file():
        try:
            stored = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, AttributeError) as exc:
            raise DemoError(f"{path} is not the demo's JSON: remove it and run again") from exc
    missing = [a.email for a in ACCOUNTS if a.email not in stored]
    if missing:
        stored.update({email: secrets.token_urlsafe(12) for email in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.touch(mode=0o600)
        partial.write_text(json.dumps(stored, indent=2) + "\n")
        partial.chmod(0o600)
        partial.replace(path)
    return stored


def ensure_sections(apis: Apis, admin: dict[str, str], out: Console) -> None:
    existing = {s["code"] for s in apis.expect(apis.members.get("/sections", headers=admin), 200)}
    for section in dataset.SECTIONS:
        if section.code in existing:
            continue
        body = {
            "code": section.code,
            "name": section.name,
            "country": section.country,
            "timezone": section.timezone,
            "language": section.language,
        }
        apis.expect(apis.members.post("/sections", json=body, headers=admin), 201, 409)
        out.print(f"section {section.code} ({section.name}, {section.timezone}) created")


def ensure_accounts(
    apis: Apis, admin: dict[str, str], passwords: dict[str, str], out: Console
) -> None:
    existing = {a["email"] for a in apis.expect(apis.members.get("/accounts", headers=admin), 200)}
    for account in ACCOUNTS:
        if account.email not in existing:
            body = {
                "email": account.email,
                "password": passwords[account.email],
                "role": account.role,
                "sections": list(account.sections),
            }
            apis.expect(apis.members.post("/accounts", json=body, headers=admin), 201, 409)
            out.print(f"account {account.email} ({account.role}) created")
        try:
            apis.sign_in(account.email, passwords[account.email])
        except DemoError as exc:
            raise DemoError(
                f"{account.email} exists but does not accept the password in "
                f"{apis.settings.accounts_file} (was that file removed?). Restore it, or reset "
                "the stack's data (make down; rm -rf .local; make up)"
            ) from exc


def ensure_members(
    apis: Apis, admin: dict[str, str], total: int, today: date, out: Console
) -> dict[str, dict[str, Any]]:
    """Import the data set's members that are not there yet (matched by phone), in
    batches; suspend those meant to be. Returns every member by phone."""
    wanted = dataset.members(total, today)
    present = {m["phone"]: m for m in apis.all_members(admin)}
    missing = [m for m in wanted if m.phone not in present]
    if missing:
        batch = apis.settings.import_batch
        with Progress(
            TextColumn("importing members"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
        ) as progress:
            task = progress.add_task("import", total=len(missing))
            for start in range(0, len(missing), batch):
                rows = missing[start : start + batch]
                response = apis.members.post(
                    "/members/import",
                    content=dataset.to_csv(rows).encode(),
                    headers={**admin, "Content-Type": "text/csv"},
                )
                if response.status_code == 422:
                    errors = response.json().get("errors", [])[:5]
                    raise DemoError(f"the members API refused the demo's CSV: {errors}")
                apis.expect(response, 201)
                progress.advance(task, len(rows))
        present = {m["phone"]: m for m in apis.all_members(admin)}
    else:
        out.print(f"members: all {len(wanted)} of the data set are there already")
    to_suspend = [
        present[m.phone]
        for m in wanted
        if m.suspended and m.phone in present and present[m.phone]["status"] == "active"
    ]
    for row in to_suspend:
        apis.expect(
            apis.members.patch(
                f"/members/{row['id']}", json={"status": "suspended"}, headers=admin
            ),
            200,
        )
    if missing or to_suspend:
        out.print(f"members: {len(missing)} imported, {len(to_suspend)} suspended")
    return present
