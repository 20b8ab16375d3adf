"""A TCP proxy in front of PostgreSQL that a test switches between failure modes.

``pass``: forward both ways. ``cut``: close every connection and refuse new ones (a database that went away).
``slow``: forward, but wait ``delay_s`` before each chunk (a loaded database or a long network path).
``blackhole``: accept connections and take bytes, but forward and answer nothing (a hung server, a stateful
firewall that dropped the flow): the kernel still acknowledges what the client sends, so only a client-side
deadline notices. Connections stalled by a blackhole resume when the mode goes back to ``pass``.

Loopback only, a random port, threads only; ``close()`` ends every connection so no test thread stays blocked.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from typing import Literal

Mode = Literal["pass", "cut", "slow", "blackhole"]
_TICK_S = 0.02


class PgProxy:
    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)):
        self.upstream = upstream
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_TICK_S * 5)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="pgproxy-accept", daemon=True)
        self._thread.start()

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    # --- switching -------------------------------------------------------------------------------------------
    def set_pass(self) -> None:
        self.mode = "pass"

    def cut(self) -> None:
        self.mode = "cut"
        self._close_all()

    def slow(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.mode = "slow"

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._listener.close()
        self._close_all()

    # --- plumbing ----------------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "cut":
                _reset(client)  # refused: the client sees a reset at once, as from a port nobody listens on
                continue
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), name="pgproxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        # A blackholed connection is accepted and never connected upstream until the blackhole ends.
        while self.mode == "blackhole" and not self._closed.is_set():
            time.sleep(_TICK_S)
        if self.mode == "cut" or self._closed.is_set():
            self._untrack_and_close(client)
            return
        try:
            server = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            self._untrack_and_close(client)
            return
        self._track(server)
        backward = threading.Thread(target=self._pump, args=(server, client), name="pgproxy-pump", daemon=True)
        backward.start()
        self._pump(client, server)
        backward.join(timeout=2)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while not self._closed.is_set():
                if self.mode == "blackhole":
                    time.sleep(_TICK_S)  # neither read nor forward: the peer waits with no answer
                    continue
                readable, _, _ = select.select([source], [], [], _TICK_S)
                if not readable or self.mode == "blackhole":
                    continue
                chunk = source.recv(65536)
                if not chunk:
                    break
                if self.mode == "slow":
                    time.sleep(self.delay_s)
                target.sendall(chunk)
        except (OSError, ValueError):
            pass  # either side closed (a cut, the client's own deadline): end both
        finally:
            self._untrack_and_close(source)
            self._untrack_and_close(target)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack_and_close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _close_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
