"""Loopback test servers that stop in milliseconds.

socketserver's ``serve_forever`` looks for a shutdown request every ``poll_interval`` seconds, 0.5 s by default, and
``shutdown()`` waits for that look: half a second of teardown for each test server. 10 ms costs nothing measurable
while a server runs."""

from __future__ import annotations

from pytest_httpserver import HTTPServer

POLL_S = 0.01


class FastStopHTTPServer(HTTPServer):
    """pytest-httpserver's server, stopped in milliseconds instead of half a second."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=POLL_S)
