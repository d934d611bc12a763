"""`python -m demo` against the services as real processes (the console harness's
platform, with the local Twilio server): it seeds, runs a drill whose simulated SMS
answers reach the board, prints the authority's summary, and a second run neither fails
nor duplicates the data set."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.alerts.fake_twilio import AUTH_TOKEN
from tests.console.conftest import (  # noqa: F401  (fixtures, imported to be used here)
    ConsolePlatform,
    platform,
    service_overrides,
)
from tests.support.infra import REPO

SIZE = 300


def run_demo(platform: ConsolePlatform, local: Path) -> subprocess.CompletedProcess[str]:  # noqa: F811
    env = {
        **os.environ,
        "MUSTER_DEMO_MEMBERS_URL": platform.members_url,
        "MUSTER_DEMO_ALERTS_URL": platform.alerts_url,
        "MUSTER_DEMO_DISPATCH_URL": platform.dispatch_url,
        "MUSTER_DEMO_CONSOLE_URL": platform.console_url,
        "MUSTER_PUBLIC_BASE_URL": platform.public_base,
        "MUSTER_BOOTSTRAP_ADMIN_EMAIL": platform.admin_email,
        "MUSTER_BOOTSTRAP_ADMIN_PASSWORD": platform.admin_password,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "MUSTER_LOCAL_DIR": str(local),
        "MUSTER_DEMO_MEMBERS": str(SIZE),
        "MUSTER_DEMO_ANSWER_SECONDS": "8",
        "COLUMNS": "160",
    }
    return subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def member_total(platform: ConsolePlatform) -> int:  # noqa: F811
    page = platform.api.members.get("/members", params={"limit": 1}, headers=platform.api.admin)
    assert page.status_code == 200, page.text
    return int(page.json()["total"])


def test_demo_seeds_once_and_its_drill_answers_reach_the_board(
    platform: ConsolePlatform,  # noqa: F811
    tmp_path: Path,
) -> None:
    first = run_demo(platform, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr + platform.logs()
    after_first = member_total(platform)
    assert after_first == SIZE

    second = run_demo(platform, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr + platform.logs()
    assert member_total(platform) == after_first
    assert f"all {SIZE} of the data set are there already" in second.stdout
    assert "closed the previous demo drill" in second.stdout

    for output in (first.stdout, second.stdout):
        assert "authority summary" in output, output
        accepted = re.search(r"accepted\s*│\s*(\d+)", output.split("authority summary")[1])
        assert accepted and int(accepted.group(1)) >= 1, output
        assert re.search(r"/emergencies/[0-9a-f-]{36}", output), output
        assert "coordinator.al@muster.example" in output

    # the board itself, as the demo's coordinator sees it (passwords kept for the next run)
    passwords = json.loads((tmp_path / "demo-accounts.json").read_text())
    assert (tmp_path / "demo-accounts.json").stat().st_mode & 0o077 == 0
    email = "coordinator.al@muster.example"
    coordinator = platform.api.bearer(email, passwords[email])
    drills = platform.api.dispatch.get(
        "/emergencies", params={"section": "AL"}, headers=coordinator
    ).json()
    assert all(d["drill"] for d in drills), drills
    # the second run closed the first drill (closing stands its members down) and left its own open
    assert sorted(d["status"] for d in drills) == ["active", "closed"], drills
    (latest,) = [d for d in drills if d["status"] == "active"]
    board = platform.api.board(coordinator, latest["id"])
    accepted_rows = [r for r in board["rows"] if r["status"] == "accepted"]
    assert accepted_rows and all(r["eta_minutes"] for r in accepted_rows), board
