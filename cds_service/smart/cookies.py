"""The two cookies of the pathway view, their names and attributes.

- the launch cookie, one per launch in flight (named from a hash of its ``state``, so two launches in two tabs do
  not overwrite each other), holds the ``state``, the PKCE verifier, the iss and its token endpoint for ten minutes;
- the session cookie, one per opened page (named from a random page id that is also in the page's URL), holds the
  access token, the patient and the iss until the token expires (at most DVT_CDS_SMART_SESSION_MAX_S).

Both are sealed (session.py), HttpOnly (no script reads them), limited to ``/smart``. Over https they are Secure
(``__Secure-`` prefix), SameSite=None and Partitioned: EHRs show SMART apps in a frame, where a SameSite=Lax cookie
would not come back from the authorization server's redirect, and CHIPS keeps a framed cookie to that EHR's page.
Cross-site requests carrying them gain nothing: the callback checks ``state``, and every page is a read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from werkzeug.wrappers import Response  # flask's Response and what redirect() returns

LAUNCH_TTL_S = 600  # an authorization code is good for minutes; a launch not completed by then is stale
COOKIE_PATH = "/smart"


@dataclass(frozen=True)
class CookiePolicy:
    secure: bool  # the service's public base URL is https

    @property
    def _prefix(self) -> str:
        return "__Secure-" if self.secure else ""

    def launch_name(self, state: str) -> str:
        return f"{self._prefix}dvt-launch-{hashlib.sha256(state.encode('utf-8')).hexdigest()[:20]}"

    def session_name(self, page_id: str) -> str:
        return f"{self._prefix}dvt-pathway-{page_id}"

    def set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=COOKIE_PATH,
            secure=self.secure,
            httponly=True,
            samesite="None" if self.secure else "Lax",
            partitioned=self.secure,
        )

    def clear(self, response: Response, name: str) -> None:
        response.delete_cookie(
            name,
            path=COOKIE_PATH,
            secure=self.secure,
            httponly=True,
            samesite="None" if self.secure else "Lax",
            partitioned=self.secure,
        )
