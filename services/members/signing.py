"""The RSA key staff tokens are signed with, its JWKS, and issuing tokens.

The key is made at first start and kept in the service's database (table
`signing_keys`) or, with `MUSTER_SIGNING_KEY_PATH`, in a PEM file. Every instance of the
service loads the same key, so any of them can issue tokens; the JWKS lists every key in
the table so that a key added for rotation is published before it signs anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.members.models import signing_keys
from shared.auth import AUDIENCE, ISSUER, TokenVerifier


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(
            jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key())
        )
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return jwk


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def to_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def from_pem(pem: str) -> SigningKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the signing key must be an RSA private key")
    return SigningKey(kid_of(key), key)


def kid_of(key: rsa.RSAPrivateKey) -> str:
    """A stable key id: a digest of the public key, so every instance names it alike."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def load_or_create_file_key(path: Path) -> SigningKey:
    if path.exists():
        return from_pem(path.read_text())
    key = new_private_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_pem(key))
    path.chmod(0o600)
    return SigningKey(kid_of(key), key)


async def load_or_create_db_key(session: AsyncSession) -> SigningKey:
    """The newest key in the table; the first instance to start creates one (an advisory
    lock keeps two instances starting together from making two)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('muster-signing-key'))"))
    pem = (
        await session.execute(
            select(signing_keys.c.private_pem).order_by(signing_keys.c.created_at.desc()).limit(1)
        )
    ).scalar_one_or_none()
    if pem is not None:
        return from_pem(pem)
    key = await asyncio.to_thread(new_private_key)
    signing = SigningKey(kid_of(key), key)
    await session.execute(signing_keys.insert().values(kid=signing.kid, private_pem=to_pem(key)))
    return signing


async def published_keys(session: AsyncSession) -> list[SigningKey]:
    pems = (await session.execute(select(signing_keys.c.private_pem))).scalars().all()
    return [from_pem(p) for p in pems]


class Keyring:
    """The key that signs, and the public keys the JWKS publishes."""

    def __init__(self, signing: SigningKey, published: list[SigningKey]) -> None:
        self.signing = signing
        by_kid = {k.kid: k for k in published}
        by_kid[signing.kid] = signing
        self.published = list(by_kid.values())

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.published]}

    def issue(
        self,
        *,
        subject: str,
        email: str,
        role: str,
        sections: list[str],
        ttl_s: int,
        token_version: int = 0,
        now: float | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "email": email,
            "role": role,
            "sections": sorted(sections),
            "iat": issued,
            "exp": issued + ttl_s,
            # the account's token_version: members refuses the token once it changes
            "ver": token_version,
        }
        return jwt.encode(
            claims, self.signing.private_key, algorithm="RS256", headers={"kid": self.signing.kid}
        )


class LocalTokenVerifier(TokenVerifier):
    """The shared verifier, fed this service's own JWKS instead of fetching it over HTTP."""

    def __init__(self, keyring: Keyring) -> None:
        super().__init__("local://members")
        self._jwks = keyring.jwks()
        self.load_jwks(self._jwks)

    async def _refresh(self, force: bool = False) -> None:
        return None
