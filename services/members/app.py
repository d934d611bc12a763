"""The members service's FastAPI app and its Kafka wiring."""

from __future__ import annotations

from fastapi import FastAPI

from services.members.settings import Settings
from shared.service import ServiceRuntime, create_app


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(settings, use_redis=False)
    return create_app(
        runtime,
        title="Muster members",
        description="The registry of trained members, sections and staff accounts.",
    )
