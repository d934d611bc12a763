"""Staff tokens for tests of services that verify them (alerts, dispatch).

A throwaway RSA key signs tokens exactly as the members service does; its JWKS is
written to a file that the service under test reads through `MUSTER_JWKS_URL=file://...`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth import AUDIENCE, ISSUER


@dataclass
class TestKey:
    __test__ = False  # not a pytest test class

    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    private_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        public.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return {"keys": [public]}

    def write_jwks(self, path: Path) -> str:
        path.write_text(json.dumps(self.jwks()))
        return f"file://{path}"

    def token(
        self,
        role: str | None = "coordinator",
        sections: Iterable[str] = (),
        *,
        email: str = "staff@example.org",
        subject: str | None = None,
        expires_in_s: int = 3600,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject or str(uuid.uuid4()),
            "email": email,
            "sections": list(sections),
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + expires_in_s,
            **extra,
        }
        if role is not None:
            claims["role"] = role
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
