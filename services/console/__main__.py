"""`python -m services.console`: run the web console (it has no migrations: it owns no data)."""

from __future__ import annotations

import argparse

from services.console.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.console", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.parse_args()
    settings = Settings()
    from services.console.app import build
    from shared.service import serve

    serve(build(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
