"""Prints each SMS (development): the number is masked but for its last digits."""

from __future__ import annotations

import sys
import uuid

from services.alerts.providers import Accepted


class ConsoleProvider:
    name = "console"

    async def send(self, to: str, body: str) -> Accepted:
        sid = f"CONSOLE{uuid.uuid4().hex}"
        masked = "*" * max(0, len(to) - 3) + to[-3:]
        sys.stdout.write(f"SMS {sid} to {masked}: {body}\n")
        sys.stdout.flush()
        return Accepted(sid)

    async def aclose(self) -> None:
        return None
