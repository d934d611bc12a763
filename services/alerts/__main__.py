"""`python -m services.alerts [serve|migrate|rebuild-index]`: run the service, its
migrations, or rebuild the Redis targeting index from the compacted member topic."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from pydantic import ValidationError

from services.alerts.settings import Settings
from shared import migrations

MIGRATIONS = Path(__file__).parent / "migrations"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.alerts", description=__doc__)
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "migrate", "rebuild-index"]
    )
    args = parser.parse_args()
    try:
        settings = Settings()
    except ValidationError as exc:
        # a configuration mistake: say which variable, without a traceback
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        sys.exit(f"alerts: cannot start: {reasons}")
    if args.command == "migrate":
        migrations.upgrade(MIGRATIONS, settings.database_url, settings.schema_name)
        print(f"alerts: schema {settings.schema_name!r} migrated")
        return
    if args.command == "rebuild-index":
        import asyncio

        from services.alerts.index import rebuild_index

        count = asyncio.run(rebuild_index(settings))
        print(f"alerts: targeting index rebuilt from {count} records")
        return
    from services.alerts.app import build
    from shared.service import serve

    # a fan-out parses and creates tens of thousands of small objects at once: with
    # CPython's default thresholds the collector rescans the whole heap many times over
    # (measured: 8x the parse time). Collect the young generations less often and keep
    # what startup created out of the scans.
    gc.set_threshold(10_000, 50, 100)
    gc.freeze()

    serve(build(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
