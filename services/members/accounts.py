"""Staff accounts (admin, coordinator, authority), logging in, and the public JWKS.

Passwords are hashed with argon2id (argon2-cffi's current defaults); hashing runs in a
thread so a login does not stall the event loop. Sign-ins are locked out with backoff
per account and per address, and password checks are bounded (sign_in_limits.py).

An admin changes an account's role and sections or disables it with
`PATCH /accounts/{id}`; each such change increments the account's `token_version`, which
every token carries as `ver`, so tokens issued before stop working here at once (see
access.py for alerts and dispatch). A disabled account's login gets the same 401 as a
wrong password, so a login does not tell whether an account exists or is disabled.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.access import Config, Db, Staff, require_admin
from services.members.models import sections, staff_accounts
from services.members.schemas import AccountIn, AccountOut, AccountPatch, TokenOut
from services.members.settings import Settings
from services.members.sign_in_limits import (
    SIGN_IN_REFUSED,
    HashingBusy,
    Locked,
    PasswordCheckGate,
    SignInLimits,
    Subject,
)
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
    return account_out(row) if row else None


def account_out(row: Row[Any]) -> AccountOut:
    m = row._mapping
    return AccountOut(
        id=m["id"],
        email=m["email"],
        role=m["role"],
        sections=list(m["sections"]),
        created_at=m["created_at"],
        disabled=m["disabled_at"] is not None,
        disabled_at=m["disabled_at"],
    )


def _unknown_sections(missing: list[str]) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [
            {
                "loc": ["body", "sections"],
                "msg": f"unknown section(s): {', '.join(missing)}",
                "type": "value_error",
            }
        ],
    )


async def missing_sections(session: AsyncSession, codes: list[str]) -> list[str]:
    if not codes:
        return []
    found = set(
        (await session.execute(select(sections.c.code).where(sections.c.code.in_(codes)))).scalars()
    )
    return sorted(set(codes) - found)


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


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def sign_in_subjects(request: Request, email: str, cfg: Settings) -> list[Subject]:
    """The account and the client address a sign-in is counted for. The address is the
    connection's (behind a proxy, the forwarded one uvicorn was told to trust)."""
    address = request.client.host if request.client else "unknown"
    return [
        Subject("account", email, cfg.signin_free_failures_per_account),
        Subject("address", address, cfg.signin_free_failures_per_address),
    ]


def _locked_out(locked: Locked) -> HTTPException:
    SIGN_IN_REFUSED.labels("locked").inc()
    whom = "for this account" if locked.subject.kind == "account" else "from this address"
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many failed sign-ins {whom}: try again in {locked.retry_after_s} seconds "
        "(an admin can reset a forgotten password meanwhile)",
        headers={"Retry-After": str(locked.retry_after_s)},
    )


@router.post(
    "/auth/token",
    response_model=TokenOut,
    responses={
        401: {"description": "wrong email or password, or the account is disabled"},
        429: {"description": "too many failed sign-ins for the account or from the address"},
        503: {"description": "too many sign-ins being checked at once"},
    },
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, db: Db, cfg: Config
) -> TokenOut:
    """Sign in. A locked account or address is answered 429 before the password is
    looked at; an unknown email costs one password check like a known one (a dummy
    hash), so neither the answer nor its time tells whether an account exists."""
    email = normalise_email(form.username)
    limits: SignInLimits = request.app.state.sign_in_limits
    gate: PasswordCheckGate = request.app.state.password_checks
    subjects = sign_in_subjects(request, email, cfg)
    if locked := await limits.locked(subjects):
        raise _locked_out(locked)
    row = (await db.execute(select(staff_accounts).where(staff_accounts.c.email == email))).first()
    await db.rollback()  # no transaction held open while waiting for a check
    stored = row.password_hash if row else _DUMMY_HASH
    try:
        ok = await gate.run(lambda: _verify(stored, form.password))
    except HashingBusy:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "too many sign-ins are being checked at once: try again in a few seconds",
            headers={"Retry-After": "2"},
        ) from None
    if row is None or not ok or row.disabled_at is not None:
        await limits.failed(subjects)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong email or password, or the account is disabled",
            headers={"WWW-Authenticate": "Bearer"},
        )
    await limits.succeeded(subjects[0])
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
        token_version=row.token_version,
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
        missing = await missing_sections(db, body.sections)
        if missing:
            raise _unknown_sections(missing)
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
    return [account_out(r) for r in rows]


@router.get("/auth/me", response_model=AccountOut)
async def who_am_i(principal: Staff, db: Db) -> AccountOut:
    """The signed-in account as it is now; 401 once it is disabled or its role or sections
    changed (the console asks on every request, so such a session ends at once)."""
    row = (
        await db.execute(
            select(staff_accounts).where(staff_accounts.c.id == UUID(principal.account_id))
        )
    ).first()
    if row is None:  # deleted between the token check and here
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the account no longer exists")
    return account_out(row)


@router.get("/accounts/{account_id}", response_model=AccountOut)
async def read_account(account_id: UUID, principal: Staff, db: Db) -> AccountOut:
    require_admin(principal)
    row = (
        await db.execute(select(staff_accounts).where(staff_accounts.c.id == account_id))
    ).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account")
    return account_out(row)


@router.patch("/accounts/{account_id}", response_model=AccountOut)
async def change_account(
    account_id: UUID, body: AccountPatch, principal: Staff, db: Db
) -> AccountOut:
    """Change an account's role, sections or disabled state (admins only). An admin cannot
    disable or demote their own account (409), so there is always an admin left."""
    require_admin(principal)
    given = body.model_fields_set
    async with db.begin():
        row = (
            await db.execute(
                select(staff_accounts).where(staff_accounts.c.id == account_id).with_for_update()
            )
        ).first()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account")
        own = str(account_id) == principal.account_id
        if own and body.disabled:
            raise HTTPException(status.HTTP_409_CONFLICT, "you cannot disable your own account")
        if own and "role" in given and body.role != "admin":
            raise HTTPException(
                status.HTTP_409_CONFLICT, "you cannot take the admin role from yourself"
            )
        role = body.role if "role" in given and body.role else row.role
        codes = sorted(set(body.sections)) if body.sections is not None else list(row.sections)
        missing = await missing_sections(db, codes if body.sections is not None else [])
        if missing:
            raise _unknown_sections(missing)
        if role == "coordinator" and not codes:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [
                    {
                        "loc": ["body", "sections"],
                        "msg": "a coordinator acts for at least one section",
                        "type": "value_error",
                    }
                ],
            )
        values: dict[str, Any] = {}
        if role != row.role:
            values["role"] = role
        if codes != sorted(row.sections):
            values["sections"] = codes
        if body.disabled is not None and body.disabled != (row.disabled_at is not None):
            values["disabled_at"] = datetime.now(UTC) if body.disabled else None
        if values:
            values["token_version"] = row.token_version + 1
            row = (
                await db.execute(
                    update(staff_accounts)
                    .where(staff_accounts.c.id == account_id)
                    .values(**values)
                    .returning(staff_accounts)
                )
            ).one()
    if values:
        log.info(
            "staff account changed",
            account_id=str(account_id),
            by=principal.account_id,
            fields=sorted(k for k in values if k != "token_version"),
        )
    return account_out(row)
