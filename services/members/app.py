"""The members service's FastAPI app: routers, signing keys, the bootstrap admin."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.members import (
    accounts,
    availability,
    exporting,
    import_jobs,
    importing,
    members_api,
    qualifications,
    sections,
    self_service,
)
from services.members.settings import Settings
from services.members.sign_in_limits import PasswordCheckGate, SignInLimits
from services.members.signing import (
    Keyring,
    LocalTokenVerifier,
    load_or_create_db_key,
    load_or_create_file_key,
    published_keys,
)
from shared.events.members import MemberSelfServiceRequested
from shared.events.topics import MEMBERS_REQUESTS
from shared.observability import get_logger
from shared.service import ServiceRuntime, create_app

log = get_logger(__name__)


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Redis keeps sign-in lockouts and the availability rate limit, shared by every
    # members process
    runtime = ServiceRuntime(settings)
    assert runtime.engine is not None and runtime.redis is not None
    runner = import_jobs.ImportJobRunner(
        runtime.engine, runtime.db, max_rows=settings.import_max_rows
    )

    # what members ask for themselves, by SMS or their personal page (alerts publishes it)
    runtime.consume(
        [MEMBERS_REQUESTS],
        {MemberSelfServiceRequested.event_type: self_service.on_request},
        name=f"{settings.consumer_group}.requests",
    )

    async def load_keys() -> None:
        async with runtime.db() as session, session.begin():
            if settings.signing_key_path:
                signing = load_or_create_file_key(Path(settings.signing_key_path))
            else:
                signing = await load_or_create_db_key(session)
            keyring = Keyring(signing, await published_keys(session))
        app.state.keyring = keyring
        app.state.verifier = LocalTokenVerifier(keyring)

    async def fail_interrupted_imports() -> None:
        async with runtime.db() as session:
            failed = await import_jobs.fail_interrupted(session)
        if failed:
            log.warning("import jobs interrupted by a restart marked failed", count=failed)

    async def stop_imports() -> None:
        await runner.stop()

    async def create_first_admin() -> None:
        password = settings.bootstrap_admin_password
        async with runtime.db() as session:
            await accounts.bootstrap_admin(
                session,
                settings.bootstrap_admin_email,
                password.get_secret_value() if password else None,
            )

    app = create_app(
        runtime,
        title="Muster members",
        description="The registry of trained members, sections and staff accounts.",
        routers=[
            accounts.router,
            sections.router,
            qualifications.router,
            importing.router,
            exporting.router,
            import_jobs.router,
            members_api.router,
            availability.router,
        ],
        on_startup=[load_keys, create_first_admin, fail_interrupted_imports],
        on_shutdown=[stop_imports],
    )
    app.state.settings = settings
    app.state.sign_in_limits = SignInLimits(
        runtime.redis,
        prefix=settings.redis_prefix,
        base_s=settings.signin_lockout_base_s,
        max_s=settings.signin_lockout_max_s,
        memory_s=settings.signin_failure_memory_s,
    )
    app.state.password_checks = PasswordCheckGate(
        concurrency=settings.password_hash_concurrency, queue=settings.password_hash_queue
    )
    app.state.availability_limit = availability.AvailabilityLimit(
        runtime.redis, prefix=settings.redis_prefix, per_minute=settings.availability_rate_per_min
    )
    app.state.import_jobs = runner
    return app
