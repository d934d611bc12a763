"""`python -m services.alerts [serve|migrate]`: run the service or its migrations."""

from __future__ import annotations

import argparse
from pathlib import Path

from services.alerts.settings import Settings
from shared import migrations

MIGRATIONS = Path(__file__).parent / "migrations"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.alerts", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args()
    settings = Settings()
    if args.command == "migrate":
        migrations.upgrade(MIGRATIONS, settings.database_url, settings.schema_name)
        print(f"alerts: schema {settings.schema_name!r} migrated")
        return
    from services.alerts.app import build
    from shared.service import serve

    serve(build(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
