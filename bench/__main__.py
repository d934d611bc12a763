"""Run every benchmark module in bench/ as its own process, then print one table of the
figures beside the raw floors measured in the same run, and write it to
`bench/results/latest.json`.

`python -m bench` runs them all (the floors first); `python -m bench members alerts` only
those whose module name starts with one of the words (the floors always run). Each
benchmark starts what it needs against the local stack (`make bench` starts it first).
BENCH_QUICK=1 (`make bench-quick`) uses small sizes for day-to-day use; BENCH_FULL=1 the
sizes the issues name.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench import results

#: modules that are not benchmarks
NOT_BENCHMARKS = {"__init__", "__main__", "results", "floors"}


def main() -> int:
    here = Path(__file__).parent
    wanted = sys.argv[1:]
    modules = sorted(
        p.stem
        for p in here.glob("*.py")
        if p.stem not in NOT_BENCHMARKS and not p.stem.startswith("_")
    )
    if wanted:
        modules = [m for m in modules if any(m.startswith(w) for w in wanted)]
    if not modules:
        print("no benchmark matched", wanted or "", file=sys.stderr)
        return 1
    modules = ["floors", *modules]
    mode = (
        "full"
        if os.environ.get("BENCH_FULL")
        else "quick"
        if os.environ.get("BENCH_QUICK")
        else "default"
    )
    failed: list[str] = []
    run_started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="muster-bench-") as folder:
        env = {**os.environ, "BENCH_RESULTS_DIR": folder}
        for index, module in enumerate(modules, 1):
            print(f"\n=== [{index}/{len(modules)}] bench.{module} ({mode} sizes) ===", flush=True)
            started = time.monotonic()
            code = subprocess.call(
                [sys.executable, "-m", f"bench.{module}"], cwd=here.parent, env=env
            )
            print(
                f"--- bench.{module}: exit {code} in {time.monotonic() - started:.1f} s", flush=True
            )
            if code != 0:
                failed.append(module)
        items = results.gather(Path(folder))
    removed = asyncio.run(_drop_bench_topics())
    if removed:
        print(f"\nremoved the run's {removed} throwaway topics", flush=True)
    floors = {f.name: f for f in items if f.is_floor}
    print("\n=== figures beside their raw floors (ratio: 1.0x is the raw part's speed) ===")
    print(results.table(items))
    out = here / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "mode": mode,
                "seconds": round(time.monotonic() - run_started, 1),
                "machine": results.machine(),
                "failed": failed,
                "figures": [
                    {
                        **asdict(f),
                        "ratio": results.ratio(f, floors),
                        "goal_met": results.goal_met(f),
                    }
                    for f in items
                ],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten: {out.relative_to(here.parent)}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


async def _drop_bench_topics() -> int:
    """Each benchmark provisions topics of its own (`bench…` prefixes); left behind, a few
    runs leave thousands of partitions, which slow the broker and its start."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    from shared.settings import MusterSettings

    admin = AIOKafkaAdminClient(bootstrap_servers=MusterSettings().kafka_bootstrap_servers)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith("bench")]
        if names:
            await admin.delete_topics(names)
        return len(names)
    except KafkaError as exc:
        print(f"the benchmarks' topics were not removed: {exc!r}", file=sys.stderr)
        return 0
    finally:
        await admin.close()


if __name__ == "__main__":
    sys.exit(main())
