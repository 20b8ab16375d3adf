"""Signing replay requests like an EHR does (CDS Hooks "Trusting CDS Clients"): a fresh JWT per call, ``aud`` the
exact URL called, a 5-minute lifetime and a unique ``jti``."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key


class Signer:
    def __init__(self, key_path: Path, *, iss: str, kid: str, alg: str = "ES384"):
        self._key = load_pem_private_key(key_path.read_bytes(), password=None)
        self.iss, self.kid, self.alg = iss, kid, alg

    def header(self, url: str) -> str:
        now = int(time.time())
        claims = {"iss": self.iss, "aud": url, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        token = jwt.encode(claims, self._key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})  # type: ignore[arg-type]
        return f"Bearer {token}"
