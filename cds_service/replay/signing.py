"""Signing replay requests like an EHR does (CDS Hooks "Trusting CDS Clients"): a fresh JWT per call, ``aud`` the
exact URL called, a 5-minute lifetime and a unique ``jti``."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key


class SigningKeyError(ValueError):
    """A ``--sign-key`` that cannot sign: the message is one line for the tester, naming the file."""


class Signer:
    def __init__(self, key_path: Path, *, iss: str, kid: str, alg: str = "ES384"):
        self._key = _load(key_path)
        self.iss, self.kid, self.alg = iss, kid, alg
        try:
            self.header("urn:check")  # a key that does not fit --alg fails here, before any call
        except (jwt.PyJWTError, NotImplementedError, TypeError, ValueError) as error:
            raise SigningKeyError(f"--sign-key {key_path} cannot sign with --alg {alg}: {error}") from None

    def header(self, url: str) -> str:
        now = int(time.time())
        claims = {"iss": self.iss, "aud": url, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        token = jwt.encode(claims, self._key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})  # type: ignore[arg-type]
        return f"Bearer {token}"


def _load(key_path: Path) -> object:
    try:
        data = key_path.read_bytes()
    except OSError as error:
        raise SigningKeyError(f"--sign-key {key_path}: {error.strerror or error}") from None
    try:
        return load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        if _looks_like_jwks(data):
            raise SigningKeyError(
                f"--sign-key {key_path} is a JWKS (the issuer's public keys, what the service trusts); "
                "give the issuer's PEM private key instead, e.g. deploy/dev-issuer/private-key.pem"
            ) from None
        if b"PUBLIC KEY" in data:
            raise SigningKeyError(
                f"--sign-key {key_path} is a public key; give the issuer's PEM private key (unencrypted)"
            ) from None
        reason = str(error).split(". See ")[0].strip() or type(error).__name__
        raise SigningKeyError(f"--sign-key {key_path} is not an unencrypted PEM private key ({reason})") from None


def _looks_like_jwks(data: bytes) -> bool:
    try:
        parsed = json.loads(data)
    except ValueError:
        return False
    return isinstance(parsed, dict) and ("keys" in parsed or "kty" in parsed)
