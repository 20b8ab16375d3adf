"""JWKS keys expire (issue 17): a key is trusted only while the set it came in is younger than the cache's lifetime;
an unknown kid refetches at once (rotation) but at most once per refetch floor (a flood of bogus kids); a failing
JWKS endpoint keeps the last good keys until *their* lifetime ends, never longer. A real HTTP server plays the
issuer; the cache's clock is a fake one, so lifetimes and floors are crossed without sleeping."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.app import create_app
from cds_service.security import JWKS_LIFETIME_S, JwksCache
from cds_service.settings import Settings
from tests.builders import NOW
from tests.inprocess import close_app
from tests.security.test_jwt import BASE, EC_KEY, ISS, OTHER_EC_KEY, post, public_jwk, token

LIFETIME = 300.0
FLOOR = 60.0
OLD = public_jwk(EC_KEY, "old", "ES384")
NEW = public_jwk(OTHER_EC_KEY, "new", "ES384")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Issuer:
    """The issuer's JWKS endpoint: what it publishes, or how it fails, can change between calls."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.keys: list[dict[str, Any]] = [OLD]
        self.failure: Callable[[], Response] | None = None
        self.delay_s = 0.0
        self.url = server.url_for("/jwks")
        server.expect_request("/jwks").respond_with_handler(self._respond)

    def _respond(self, request: Request) -> Response:
        time.sleep(self.delay_s)
        if self.failure is not None:
            return self.failure()
        return Response(json.dumps({"keys": self.keys}), content_type="application/json")

    @property
    def fetches(self) -> int:
        return len(self.server.log)


@pytest.fixture
def issuer(fhir_server: HTTPServer) -> Issuer:
    return Issuer(fhir_server)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def cache_of(clock: Clock, *, floor: float = FLOOR, lifetime: float = LIFETIME, timeout_s: float = 2.0) -> JwksCache:
    return JwksCache(
        timeout_s=timeout_s, min_refetch_s=floor, allow_http_loopback=True, lifetime_s=lifetime, clock=clock
    )


@pytest.fixture
def app_with(make_settings: Callable[..., Settings]) -> Iterator[Callable[[JwksCache, str], Flask]]:
    """The service, calls signed by ISS whose keys are at the issuer's JWKS URL, read through ``cache``."""
    apps: list[Flask] = []

    def make(cache: JwksCache, jwks_url: str) -> Flask:
        settings = make_settings(auth="jwt", public_base_url=BASE, trusted_issuers=[{"iss": ISS, "jwks_url": jwks_url}])
        app = create_app(settings, clock=lambda: NOW, jwks_cache=cache)
        app.testing = False
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


def signed_by_old() -> str:
    return f"Bearer {token(kid='old')}"


def signed_by_new() -> str:
    return f"Bearer {token(key=OTHER_EC_KEY, kid='new')}"


def test_the_default_lifetime_is_finite_and_not_shorter_than_the_default_floor(db_url: str) -> None:
    assert 0 < JWKS_LIFETIME_S < float("inf")
    assert Settings(database_url=db_url).jwks_min_refetch_s <= JWKS_LIFETIME_S
    with pytest.raises(ValueError, match="lifetime"):
        JwksCache(timeout_s=1, min_refetch_s=0, allow_http_loopback=True, lifetime_s=0)


def test_a_removed_key_stops_verifying_after_the_lifetime(issuer: Issuer, clock: Clock, app_with) -> None:
    app = app_with(cache_of(clock), issuer.url)
    assert post(app, signed_by_old()).status_code == 200
    issuer.keys = [NEW]  # the issuer withdraws "old" (compromised, say); nobody restarts the service

    clock.now += LIFETIME - 1
    assert post(app, signed_by_old()).status_code == 200  # still within the lifetime of the set it came in
    assert issuer.fetches == 1

    clock.now += 2
    assert post(app, signed_by_old()).status_code == 401  # the set expired; the refetched one has no "old"
    assert issuer.fetches == 2
    assert post(app, signed_by_new()).status_code == 200  # and the new key is there, without another fetch
    assert issuer.fetches == 2


def test_a_rotated_in_key_is_picked_up_by_an_unknown_kid_refetch(issuer: Issuer, clock: Clock, app_with) -> None:
    app = app_with(cache_of(clock), issuer.url)
    assert post(app, signed_by_old()).status_code == 200
    clock.now += FLOOR + 1  # well within the lifetime: only the unknown kid triggers the refetch
    issuer.keys = [NEW]
    assert post(app, signed_by_new()).status_code == 200
    assert issuer.fetches == 2
    # The refetch replaced the set: the key it no longer carries is withdrawn at once, not at the end of the lifetime.
    assert post(app, signed_by_old()).status_code == 401
    assert issuer.fetches == 2


def test_a_rotated_in_key_waits_for_the_floor_after_the_last_fetch(issuer: Issuer, clock: Clock) -> None:
    cache = cache_of(clock)
    assert cache.key(issuer.url, "old") == OLD
    issuer.keys = [OLD, NEW]
    clock.now += FLOOR - 1
    assert cache.key(issuer.url, "new") is None  # within the floor of the last fetch: not fetched again
    assert issuer.fetches == 1
    clock.now += 1
    assert cache.key(issuer.url, "new") == NEW
    assert issuer.fetches == 2


def test_the_floor_limits_refetches_under_a_flood_of_unknown_kids(issuer: Issuer, clock: Clock, app_with) -> None:
    cache = cache_of(clock)
    app = app_with(cache, issuer.url)
    assert post(app, signed_by_old()).status_code == 200
    clock.now += FLOOR  # the floor has passed: the first bogus kid refetches, the rest of the flood does not
    for i in range(20):
        assert post(app, f"Bearer {token(kid=f'bogus-{i}')}").status_code == 401
    with ThreadPoolExecutor(16) as pool:  # and at once, from many threads
        assert not any(pool.map(lambda i: cache.key(issuer.url, f"parallel-{i}"), range(200)))
    assert issuer.fetches == 2
    assert post(app, signed_by_old()).status_code == 200  # the good key is untouched by the flood

    clock.now += FLOOR
    with ThreadPoolExecutor(16) as pool:
        assert not any(pool.map(lambda i: cache.key(issuer.url, f"later-{i}"), range(200)))
    assert issuer.fetches == 3  # one refetch per floor period, whatever the size of the flood


def test_callers_at_expiry_wait_for_one_fetch_and_are_not_refused(issuer: Issuer, clock: Clock) -> None:
    cache = cache_of(clock)
    assert cache.key(issuer.url, "old") == OLD
    clock.now += LIFETIME
    issuer.delay_s = 0.3  # a slow refetch: callers arriving meanwhile wait for it instead of being refused
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(lambda _: cache.key(issuer.url, "old"), range(8)))
    assert found == [OLD] * 8
    assert issuer.fetches == 2


FAILURES: dict[str, Callable[[], Response]] = {
    "500": lambda: Response("down", status=500),
    "404": lambda: Response("gone", status=404),
    "redirect": lambda: Response("", status=302, headers={"Location": "https://attacker.example/jwks"}),
    "html": lambda: Response("<html>maintenance</html>", content_type="text/html"),
    "not a jwks": lambda: Response(json.dumps({"error": "busy"}), content_type="application/json"),
    "keys not a list": lambda: Response(json.dumps({"keys": {"old": OLD}}), content_type="application/json"),
    "over the byte cap": lambda: Response(
        json.dumps({"keys": [OLD], "pad": "x" * 300_000}), content_type="application/json"
    ),
}


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
def test_a_failing_endpoint_keeps_the_last_good_keys_until_they_expire(
    issuer: Issuer, clock: Clock, app_with, failure: str
) -> None:
    """The choice: serve the last good set while the issuer fails, but only for the lifetime it was fetched with.
    Longer ("stale if error" without end) would let anyone who can block the issuer's endpoint keep a withdrawn key
    trusted; shorter would turn every blip of the issuer's endpoint into refused calls."""
    app = app_with(cache_of(clock), issuer.url)
    assert post(app, signed_by_old()).status_code == 200
    issuer.failure = FAILURES[failure]

    clock.now += FLOOR
    assert post(app, signed_by_new()).status_code == 401  # an unknown kid refetches; the fetch fails...
    assert issuer.fetches == 2
    assert post(app, signed_by_old()).status_code == 200  # ...and the last good set is still served

    clock.now += LIFETIME - FLOOR  # the set fetched at the start is now as old as its lifetime
    assert post(app, signed_by_old()).status_code == 401  # the refetch fails: no live set, nothing trusted
    assert issuer.fetches == 3
    for _ in range(5):
        assert post(app, signed_by_old()).status_code == 401
    assert issuer.fetches == 3  # while the issuer fails, it is asked at most once per floor

    issuer.failure = None
    clock.now += FLOOR
    assert post(app, signed_by_old()).status_code == 200  # the issuer answers again: trusted again
    assert issuer.fetches == 4


def test_an_unreachable_or_slow_endpoint_keeps_the_last_good_keys_until_they_expire(
    issuer: Issuer, clock: Clock
) -> None:
    cache = cache_of(clock, timeout_s=0.2)
    assert cache.key(issuer.url, "old") == OLD
    issuer.delay_s = 0.5  # beyond the fetch timeout
    clock.now += FLOOR
    assert cache.key(issuer.url, "new") is None
    assert cache.key(issuer.url, "old") == OLD
    clock.now += LIFETIME
    assert cache.key(issuer.url, "old") is None

    unreachable = "http://127.0.0.1:9/jwks"  # nothing listens: connection refused
    assert cache.key(unreachable, "old") is None


def test_an_issuer_publishing_an_empty_set_withdraws_every_key(issuer: Issuer, clock: Clock) -> None:
    cache = cache_of(clock)
    assert cache.key(issuer.url, "old") == OLD
    issuer.keys = []  # a JWKS with no keys is an answer, not a failure
    clock.now += FLOOR
    assert cache.key(issuer.url, "unknown") is None
    assert cache.key(issuer.url, "old") is None


def test_a_lifetime_shorter_than_the_floor_still_refetches_once_per_lifetime(issuer: Issuer, clock: Clock) -> None:
    cache = cache_of(clock, floor=600, lifetime=30)
    assert cache.key(issuer.url, "old") == OLD
    issuer.keys = [NEW]
    clock.now += 31
    assert cache.key(issuer.url, "old") is None
    assert cache.key(issuer.url, "new") == NEW
    assert issuer.fetches == 2


def test_a_withdrawn_jku_list_stops_being_honoured_after_the_lifetime(fhir_server: HTTPServer, clock: Clock) -> None:
    state: dict[str, Any] = {"status": 200}
    listed = ["https://ehr.example.org/jwks/1"]
    fhir_server.expect_request("/jkus").respond_with_handler(
        lambda request: Response(json.dumps({"jkus": listed}), status=state["status"], content_type="application/json")
    )
    cache = cache_of(clock)
    url = fhir_server.url_for("/jkus")
    assert cache.jku_list(url) == frozenset(listed)
    state["status"] = 503
    clock.now += FLOOR
    assert cache.jku_list(url) == frozenset(listed)  # a failed refetch keeps the last good list...
    clock.now += LIFETIME
    assert cache.jku_list(url) == frozenset()  # ...until its lifetime ends
    assert len(fhir_server.log) == 3
    state["status"] = 200
    clock.now += FLOOR
    assert cache.jku_list(url) == frozenset(listed)


def test_the_lifetime_is_real_time_by_default(issuer: Issuer) -> None:
    """No fake clock: a set fetched 0.2 s ago with a 0.1 s lifetime is gone (the default clock is monotonic time)."""
    cache = JwksCache(timeout_s=2, min_refetch_s=0, allow_http_loopback=True, lifetime_s=0.1)
    assert cache.key(issuer.url, "old") == OLD
    issuer.keys = [NEW]
    threading.Event().wait(0.2)
    assert cache.key(issuer.url, "old") is None
