"""A proxy that holds every request for a fixed delay before passing it on: a real EHR's round trip in front of a
FHIR server on loopback (the Medplum test server), so the fetch path is measured against what users wait for.

asyncio, one upstream connection per client connection (keep-alive kept on both sides). Requests are read up to
the end of their body (Content-Length; the service's client sends no chunked bodies), held, then forwarded;
answers are relayed as bytes. Loopback only.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


class _Counts:
    """Requests passed on, and the time the server behind took to start answering them (its own work)."""

    def __init__(self) -> None:
        self.requests = 0
        self.upstream_s = 0.0


class _Pending:
    since: float | None = None  # when the connection's outstanding request was passed on


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: _Pending, counts: _Counts) -> None:
    try:
        while chunk := await reader.read(65536):
            if pending.since is not None:
                counts.upstream_s += time.perf_counter() - pending.since
                pending.since = None
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


# Answered by the proxy itself: requests passed on, and ms the server behind took to start answering them.
COUNT_PATH = b"/__proxy/requests"


async def _requests(
    client: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream: asyncio.StreamWriter,
    delay_s: float,
    pending: _Pending,
    counts: _Counts,
) -> None:
    try:
        while True:
            head = await client.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            body = await client.readexactly(length) if length else b""
            if head.split(b" ", 2)[1] == COUNT_PATH:
                answer = json.dumps({"requests": counts.requests, "upstream_ms": counts.upstream_s * 1000}).encode()
                client_writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
                continue
            counts.requests += 1
            await asyncio.sleep(delay_s)  # the only cost this proxy is meant to add
            upstream.write(head + body)
            pending.since = time.perf_counter()
            await upstream.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        upstream.close()


def serve(upstream_port: int, delay_s: float, port_queue: Any) -> None:
    """Run forever in its own process; put the chosen port on ``port_queue``."""
    counts = _Counts()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        pending = _Pending()
        await asyncio.gather(
            _requests(client_reader, client_writer, up_writer, delay_s, pending, counts),
            _pump(up_reader, client_writer, pending, counts),
        )

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())
