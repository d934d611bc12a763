"""Figures of one benchmark run, each beside the raw part it stands on.

A benchmark module records what it measured with `figure(...)`; a raw floor (the bare
infrastructure doing the same work, measured in the same run on the same stack) with
`floor(...)`. Both are appended as JSON lines to `$BENCH_RESULTS_DIR/<module>.jsonl`,
which `python -m bench` gathers into one table and `bench/results/latest.json`.
Run alone (no BENCH_RESULTS_DIR), a module only prints.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Figure:
    module: str
    name: str
    value: float
    unit: str
    better: Better
    #: the name of the floor this figure is read against (None: no raw counterpart)
    floor: str | None = None
    #: the issue's goal for this figure, in the same unit (None: no goal)
    goal: float | None = None
    is_floor: bool = False


def _write(item: Figure) -> None:
    folder = os.environ.get("BENCH_RESULTS_DIR")
    if not folder:
        return
    path = Path(folder) / f"{item.module}.jsonl"
    with path.open("a") as out:
        out.write(json.dumps(asdict(item)) + "\n")


def figure(
    module: str,
    name: str,
    value: float,
    unit: str,
    *,
    better: Better,
    floor: str | None = None,
    goal: float | None = None,
) -> None:
    _write(Figure(module, name, value, unit, better, floor, goal))


def floor(module: str, name: str, value: float, unit: str, *, better: Better) -> None:
    _write(Figure(module, name, value, unit, better, is_floor=True))


def ratio(item: Figure, floors: dict[str, Figure]) -> float | None:
    """How far the figure is from its floor: 1.0 is the speed of the raw part; above 1 is
    slower (a latency 3x the floor's, or a rate a third of it)."""
    base = floors.get(item.floor or "")
    if base is None or base.value <= 0 or item.value <= 0:
        return None
    if item.better == "lower":
        return item.value / base.value
    return base.value / item.value


def gather(folder: Path) -> list[Figure]:
    items: list[Figure] = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                items.append(Figure(**json.loads(line)))
    return items


def goal_met(item: Figure) -> bool | None:
    if item.goal is None:
        return None
    return item.value >= item.goal if item.better == "higher" else item.value <= item.goal


def machine() -> dict[str, object]:
    """Cores, memory and versions, so a figure can be read against where it was measured."""
    memory_kb = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    versions: dict[str, str] = {"python": sys.version.split()[0]}
    for package in ("aiokafka", "asyncpg", "redis", "httpx", "fastapi", "sqlalchemy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "platform": platform.platform(),
        "versions": versions,
    }


def table(items: list[Figure]) -> str:
    floors = {f.name: f for f in items if f.is_floor}
    rows = [("path", "figure", "raw floor", "ratio", "goal")]
    for item in items:
        if item.is_floor:
            continue
        base = floors.get(item.floor or "")
        r = ratio(item, floors)
        met = goal_met(item)
        goal = (
            ""
            if item.goal is None
            else f"{_num(item.goal)} {item.unit} {'met' if met else 'not met'}"
        )
        rows.append(
            (
                f"{item.module}: {item.name}",
                f"{_num(item.value)} {item.unit}",
                f"{base.name} {_num(base.value)} {base.unit}" if base else "-",
                f"{r:.1f}x" if r is not None else "-",
                goal,
            )
        )
    rows.append(("", "", "", "", ""))
    for base in floors.values():
        rows.append((f"floor: {base.name}", f"{_num(base.value)} {base.unit}", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
