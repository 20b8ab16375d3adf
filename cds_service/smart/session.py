"""Sealed cookies: the pending launch (state, PKCE verifier) and the page's session (access token, patient, iss).

Why a cookie and not a server-side session: the service runs as several gunicorn workers, often on several
hosts, and keeps nothing about patients but its audit; a token held in one worker's memory would be missing in
the next request's worker, and a shared token table would be new PHI-adjacent state to secure. So the browser
keeps it, sealed: AES-256-GCM under a key derived (HKDF-SHA256) from DVT_CDS_SMART_SESSION_KEY. The browser can
neither read the token nor alter any field. The cookie's name is the GCM associated data, so a sealed value is
valid only under the name it was issued for: a launch cookie cannot pose as a session, nor one page's session as
another's. Every payload carries its own expiry, checked here whatever the cookie's Max-Age said.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12
_INFO = b"distal-dvt-cds smart pathway session v1"
MAX_COOKIE_BYTES = 4000  # browsers keep at most about 4096 bytes per cookie, name and attributes included


class SessionBox:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("the session key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_secret(cls, secret: str) -> SessionBox:
        """A key from the configured secret: HKDF, so any long random string serves (not only 32 raw bytes)."""
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode("utf-8"))
        return cls(key)

    @classmethod
    def ephemeral(cls) -> SessionBox:
        """A key for this process only (development: one process, sessions end with it)."""
        return cls(AESGCM.generate_key(bit_length=256))

    def seal(self, name: str, payload: dict[str, Any], ttl_s: float, *, now: float | None = None) -> str:
        body = orjson.dumps({**payload, "exp": (now if now is not None else time.time()) + ttl_s})
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, body, name.encode("ascii"))
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, name: str, value: str | None, *, now: float | None = None) -> dict[str, Any] | None:
        """The payload, or None for a missing, altered, renamed or expired cookie (all the same to the caller)."""
        if not value or len(value) > MAX_COOKIE_BYTES:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= _NONCE_BYTES:
            return None
        try:
            body = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], name.encode("ascii"))
        except InvalidTag:
            return None
        payload = orjson.loads(body)
        expires = payload.get("exp")
        if not isinstance(expires, int | float) or expires <= (now if now is not None else time.time()):
            return None
        return payload
