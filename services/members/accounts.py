"""Staff accounts (admin, coordinator, authority), logging in, and the public JWKS.

Passwords are hashed with argon2id (argon2-cffi's current defaults); hashing runs in a
thread so a login does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.access import Config, Db, Staff, require_admin
from services.members.models import sections, staff_accounts
from services.members.schemas import AccountIn, AccountOut, TokenOut
from services.members.signing import Keyring
from shared.observability import get_logger

log = get_logger(__name__)
router = APIRouter(tags=["accounts"])
_hasher = PasswordHasher()
#: verified against when the email is unknown, so a wrong email costs as long as a wrong
#: password (no account enumeration by timing)
_DUMMY_HASH = _hasher.hash("muster-no-such-account")


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def check_password(stored_hash: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(_hasher.verify, stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def create_account(
    session: AsyncSession, *, email: str, password: str, role: str, section_codes: list[str]
) -> AccountOut | None:
    """Insert an account; None if the email is taken."""
    account_id = uuid.uuid4()
    row = (
        await session.execute(
            insert(staff_accounts)
            .values(
                id=account_id,
                email=normalise_email(email),
                password_hash=await hash_password(password),
                role=role,
                sections=sorted(set(section_codes)),
            )
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(staff_accounts)
        )
    ).first()
    return AccountOut.model_validate(row._mapping) if row else None


async def bootstrap_admin(session: AsyncSession, email: str | None, password: str | None) -> bool:
    """Create the first admin when there is none and both variables are set."""
    if not email or not password:
        return False
    async with session.begin():
        admins = await session.scalar(
            select(func.count()).select_from(staff_accounts).where(staff_accounts.c.role == "admin")
        )
        if admins:
            return False
        created = await create_account(
            session, email=email, password=password, role="admin", section_codes=[]
        )
    if created:
        log.info("bootstrap admin created", account_id=str(created.id))
    return created is not None


@router.post("/auth/token", response_model=TokenOut)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, db: Db, cfg: Config
) -> TokenOut:
    row = (
        await db.execute(
            select(staff_accounts).where(staff_accounts.c.email == normalise_email(form.username))
        )
    ).first()
    ok = await check_password(row.password_hash if row else _DUMMY_HASH, form.password)
    if row is None or not ok:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong email or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if _hasher.check_needs_rehash(row.password_hash):
        async with db.begin():
            await db.execute(
                update(staff_accounts)
                .where(staff_accounts.c.id == row.id)
                .values(password_hash=await hash_password(form.password))
            )
    keyring: Keyring = request.app.state.keyring
    token = keyring.issue(
        subject=str(row.id),
        email=row.email,
        role=row.role,
        sections=list(row.sections),
        ttl_s=cfg.token_ttl_s,
    )
    log.info("staff logged in", account_id=str(row.id), role=row.role)
    return TokenOut(access_token=token, expires_in=cfg.token_ttl_s)


@router.get("/.well-known/jwks.json", tags=["accounts"])
async def jwks(request: Request) -> dict[str, Any]:
    keyring: Keyring = request.app.state.keyring
    return keyring.jwks()


@router.post("/accounts", status_code=status.HTTP_201_CREATED, response_model=AccountOut)
async def add_account(body: AccountIn, principal: Staff, db: Db) -> AccountOut:
    require_admin(principal)
    async with db.begin():
        if body.sections:
            found = set(
                (
                    await db.execute(
                        select(sections.c.code).where(sections.c.code.in_(body.sections))
                    )
                ).scalars()
            )
            missing = sorted(set(body.sections) - found)
            if missing:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    [
                        {
                            "loc": ["body", "sections"],
                            "msg": f"unknown section(s): {', '.join(missing)}",
                            "type": "value_error",
                        }
                    ],
                )
        created = await create_account(
            db,
            email=body.email,
            password=body.password,
            role=body.role,
            section_codes=body.sections,
        )
    if created is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "an account with this email exists")
    log.info("staff account created", account_id=str(created.id), role=created.role)
    return created


@router.get("/accounts", response_model=list[AccountOut])
async def list_accounts(principal: Staff, db: Db) -> list[AccountOut]:
    require_admin(principal)
    rows = (await db.execute(select(staff_accounts).order_by(staff_accounts.c.created_at))).all()
    return [AccountOut.model_validate(r._mapping) for r in rows]
