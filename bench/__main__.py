"""Run every benchmark module in bench/ as its own process and let each print its figures.

`python -m bench` runs them all; `python -m bench members alerts` only those whose module
name starts with one of the words. Each benchmark starts what it needs against the
local stack (`make bench` starts it first). BENCH_FULL=1 runs the sizes the issues name.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    wanted = sys.argv[1:]
    modules = sorted(
        p.stem
        for p in here.glob("*.py")
        if p.stem not in {"__init__", "__main__"} and not p.stem.startswith("_")
    )
    if wanted:
        modules = [m for m in modules if any(m.startswith(w) for w in wanted)]
    if not modules:
        print("no benchmark matched", wanted or "", file=sys.stderr)
        return 1
    failed: list[str] = []
    for index, module in enumerate(modules, 1):
        print(f"\n=== [{index}/{len(modules)}] bench.{module} ===", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{module}"], cwd=here.parent)
        print(f"--- bench.{module}: exit {code} in {time.monotonic() - started:.1f} s", flush=True)
        if code != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
