"""A FHIR server that adds a fixed delay to every query: the round trip of a real EHR FHIR API, on loopback.

asyncio, HTTP/1.1 with keep-alive, answers precomputed per query: apart from the delay it costs next to nothing,
so the fetch-path figures measure the service, not this stand-in.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from cds_service.replay.search import search, searchset


def serve(resources: list[dict[str, Any]], port_queue: Any, delay_s: float) -> None:
    """Run forever in its own process; put the chosen port on ``port_queue``."""
    answers: dict[str, tuple[bytes, int]] = {}

    def answer(target: str) -> tuple[bytes, int]:
        if target not in answers:
            parts = urlsplit(target)
            params = parse_qsl(parts.query, keep_blank_values=True)
            query = unquote(parts.path).removeprefix("/fhir/") + (("?" + urlencode(params)) if params else "")
            kind, found = search(query, resources)
            if kind == "read":
                body = found if found is not None else {"resourceType": "OperationOutcome", "issue": []}
                answers[target] = (json.dumps(body).encode(), 200 if found is not None else 404)
            else:
                answers[target] = (json.dumps(searchset(found)).encode(), 200)  # type: ignore[arg-type]
        return answers[target]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
                await asyncio.sleep(delay_s)  # the only cost this server is meant to add
                body, status = answer(target)
                writer.write(
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
                    f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())
