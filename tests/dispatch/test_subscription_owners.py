"""Issue 10, defect 16: an authority manages only the webhooks it created; another
authority of the same section neither lists, resumes nor deletes them. Admins manage all.

`subscriptions.manages` and `subscriptions.managed_by` are the rule, against a migrated
dispatch schema in the real PostgreSQL."""

from __future__ import annotations

import uuid

from services.dispatch import subscriptions
from shared.auth import Principal
from shared.db import make_engine, make_sessionmaker
from tests.support.infra import Infra
from tests.support.processes import run_migrations

SECTION = "AL"


def staff(role: str, *sections: str) -> Principal:
    return Principal(
        account_id=str(uuid.uuid4()),
        email=f"{role}@example.org",
        role=role,  # type: ignore[arg-type]
        sections=frozenset(sections),
    )


async def test_an_authority_manages_only_its_own_webhooks(
    infra: Infra, service_env: dict[str, str], schema: str
) -> None:
    run_migrations("dispatch", service_env)
    prefecture, fire_service = staff("authority", SECTION), staff("authority", SECTION)
    admin, coordinator = staff("admin"), staff("coordinator", SECTION)
    engine = make_engine(infra.database_url, schema, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            theirs = await subscriptions.create(
                session, section=SECTION, url="https://prefecture.example/hook",
                secret="s" * 32, created_by=prefecture.account_id,
            )  # fmt: skip
            by_admin = await subscriptions.create(
                session, section=SECTION, url="https://ops.example/hook",
                secret="s" * 32, created_by=admin.account_id,
            )  # fmt: skip
            own = await subscriptions.create(
                session, section=SECTION, url="https://fire.example/hook",
                secret="s" * 32, created_by=fire_service.account_id,
            )  # fmt: skip

            assert [r.id for r in await subscriptions.managed_by(session, fire_service)] == [own.id]
            assert [r.id for r in await subscriptions.managed_by(session, prefecture)] == [
                theirs.id
            ]
            assert {r.id for r in await subscriptions.managed_by(session, admin)} == {
                theirs.id,
                by_admin.id,
                own.id,
            }
    finally:
        await engine.dispose()

    assert subscriptions.manages(fire_service, own)
    assert not subscriptions.manages(fire_service, theirs)
    assert not subscriptions.manages(fire_service, by_admin)
    assert all(subscriptions.manages(admin, row) for row in (theirs, by_admin, own))
    # a coordinator of the section, or the creator moved to another section, does not
    assert not subscriptions.manages(coordinator, own)
    moved = Principal(fire_service.account_id, fire_service.email, "authority", frozenset({"XK"}))
    assert not subscriptions.manages(moved, own)
