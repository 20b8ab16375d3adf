"""A real FHIR R4 server for tests: ``tests/medplum/server.mjs`` (@medplum/fhir-router, in memory) under Node.

Usage::

    with MedplumServer() as fhir:
        fhir.load(collection_bundle)           # ids kept: references between the resources stay valid
        requests.get(f"{fhir.base_url}/Condition?patient=pat-1")
        fhir.reset()                           # empty again

Needs ``node`` (20.19+ or 22.12+) on PATH and the pinned packages: ``npm ci --prefix tests/medplum``.
The server binds 127.0.0.1 on a free port; it exits on SIGTERM (``stop()``) and also by itself when this
process goes away (its stdin is a pipe held here, see ``--exit-on-stdin-close``), so no orphan is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

MEDPLUM_DIR = Path(__file__).resolve().parent / "medplum"
SERVER_SCRIPT = MEDPLUM_DIR / "server.mjs"
INSTALL_HINT = "npm ci --prefix tests/medplum"

# No Node flag is needed: @medplum/fhir-router 4.5.2 and the parts of @medplum/core it loads never touch the
# global WebSocket (only MedplumClient's subscriptions do), so `--experimental-websocket` is not passed on Node 20.
NODE_FLAGS: tuple[str, ...] = ()

FHIR_JSON = "application/fhir+json"
# What Medplum's own server does with a search: 20 results a page without `_count`, at most 1000 with it.
MEDPLUM_PAGE_SIZE = 20
MEDPLUM_MAX_COUNT = 1000


class MedplumServerError(RuntimeError):
    """The test FHIR server could not be started, or refused a load/reset."""


class MedplumServer:
    """One Node process serving FHIR R4 at ``base_url`` from an in-memory medplum repository."""

    def __init__(
        self,
        *,
        startup_timeout: float = 30.0,
        node: str | None = None,
        node_flags: Sequence[str] = NODE_FLAGS,
        verbose: bool = False,
        request_timeout: float = 120.0,
        page_size: int = 0,
        max_count: int = 0,
    ) -> None:
        """``page_size``: results a page of a search without ``_count`` (Medplum's server: 20; 0: all on one page);
        ``max_count``: the largest page a ``_count`` gets (Medplum's server: 1000; 0: no cap)."""
        self.startup_timeout = startup_timeout
        self.node = node
        self.node_flags = tuple(node_flags)
        self.verbose = verbose
        self.request_timeout = request_timeout
        self.page_size = page_size
        self.max_count = max_count
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._logdir: tempfile.TemporaryDirectory[str] | None = None
        self._session: requests.Session | None = None
        self.startup_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> MedplumServer:
        if self._proc is not None:
            raise MedplumServerError("the medplum test server is already started")
        node = self.node or shutil.which("node")
        if node is None:
            raise MedplumServerError(f"`node` is not on PATH: install Node.js 20.19+ and run `{INSTALL_HINT}`")
        if not (MEDPLUM_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
            raise MedplumServerError(
                f"{MEDPLUM_DIR / 'node_modules'} is missing or incomplete: "
                f"run `{INSTALL_HINT}` from the repository root"
            )
        self._logdir = tempfile.TemporaryDirectory(prefix="medplum-server-")
        stdout_path = Path(self._logdir.name) / "stdout"
        stderr_path = Path(self._logdir.name) / "stderr"
        command = [node, *self.node_flags, str(SERVER_SCRIPT), "--port", "0", "--exit-on-stdin-close"]
        if self.verbose:
            command.append("--verbose")
        command += ["--page-size", str(self.page_size), "--max-count", str(self.max_count)]
        started = time.monotonic()
        # Files, not pipes, for stdout/stderr: nothing can block on a full pipe nobody reads.
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(
                command,
                cwd=MEDPLUM_DIR,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                env={**os.environ, "NODE_ENV": "test"},
            )
        try:
            self._port = self._wait_for_port(stdout_path, started)
        except BaseException:
            self._terminate()
            self._cleanup()
            raise
        self.startup_seconds = time.monotonic() - started
        self._session = requests.Session()
        return self

    def _wait_for_port(self, stdout_path: Path, started: float) -> int:
        assert self._proc is not None
        deadline = started + self.startup_timeout
        while True:
            text = stdout_path.read_text(encoding="utf-8", errors="replace")
            if "\n" in text:
                line = text.split("\n", 1)[0]
                try:
                    port = json.loads(line)["port"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise MedplumServerError(
                        f"unexpected first line from the medplum test server: {line!r}\n{self._stderr_tail()}"
                    ) from exc
                if not isinstance(port, int) or not 0 < port < 65536:
                    raise MedplumServerError(f"bad port from the medplum test server: {line!r}")
                return port
            code = self._proc.poll()
            if code is not None:
                raise MedplumServerError(
                    f"the medplum test server exited with code {code} before listening "
                    f"(if modules are missing, run `{INSTALL_HINT}`)\n{self._stderr_tail()}"
                )
            if time.monotonic() > deadline:
                raise MedplumServerError(
                    f"the medplum test server did not report its port within {self.startup_timeout:.0f} s\n"
                    f"{self._stderr_tail()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self._terminate(timeout)
        self._cleanup()
        self._port = None

    def _terminate(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: the server closes its sockets and exits 0
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc.stdin is not None:
            proc.stdin.close()
        self._proc = None

    def _cleanup(self) -> None:
        if self._logdir is not None:
            self._logdir.cleanup()
            self._logdir = None

    def __enter__(self) -> MedplumServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------------------------

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The node process while started (its ``returncode`` is 0 after a clean SIGTERM exit)."""
        return self._proc

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def port(self) -> int:
        if self._port is None:
            raise MedplumServerError("the medplum test server is not started")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The FHIR base, ``http://127.0.0.1:PORT/fhir`` (what an EHR would send as ``fhirServer``)."""
        return f"{self.root_url}/fhir"

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far (its log; requests too when ``verbose``)."""
        if self._logdir is None:
            return ""
        path = Path(self._logdir.name) / "stderr"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def _stderr_tail(self, lines: int = 40) -> str:
        text = self.stderr().rstrip()
        return "server stderr:\n" + "\n".join(text.splitlines()[-lines:]) if text else "server stderr: (empty)"

    # -- data --------------------------------------------------------------------------------------------------

    def load(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Store a Bundle's resources with their own ids (any Bundle type; each resource is PUT as it is).

        A ``transaction``/``batch`` Bundle whose entries are not all resources with ids (creates with
        ``urn:uuid`` fullUrls, deletes, ...) is posted to the FHIR base as it is instead, with FHIR semantics
        (and medplum's limit of 50 updates per transaction). Returns the server's response Bundle.
        """
        if bundle.get("resourceType") != "Bundle":
            raise MedplumServerError("load() takes a Bundle")
        entries = bundle.get("entry") or []
        plain = all(
            isinstance(e.get("resource"), dict)
            and e["resource"].get("id")
            and (e.get("request") or {}).get("method", "PUT") in ("PUT", "POST")
            for e in entries
        )
        if not plain and bundle.get("type") in ("transaction", "batch"):
            return self.transaction(bundle)
        return self._post(f"{self.root_url}/$load", bundle, what="$load")

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a ``transaction`` or ``batch`` Bundle to the FHIR base; raise unless every entry succeeded."""
        response = self._post(self.base_url, bundle, what=f"{bundle.get('type')} Bundle")
        failed = [
            e.get("response", {}).get("status")
            for e in response.get("entry") or []
            if not str(e.get("response", {}).get("status", "")).startswith("2")
        ]
        if failed:
            raise MedplumServerError(f"{len(failed)} Bundle entries failed: {failed[:10]}")
        return response

    def reset(self) -> None:
        """Delete every resource."""
        self._post(f"{self.root_url}/$reset", None, what="$reset")

    def _post(self, url: str, body: dict[str, Any] | None, *, what: str) -> dict[str, Any]:
        session = self._session
        if session is None:
            raise MedplumServerError("the medplum test server is not started")
        response = session.post(
            url,
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
            timeout=self.request_timeout,
        )
        if response.status_code >= 300:
            raise MedplumServerError(f"{what} failed: HTTP {response.status_code}: {response.text[:2000]}")
        result: dict[str, Any] = response.json()
        return result


def medplum_fixture(**kwargs: Any) -> Iterator[MedplumServer]:
    """Body of a pytest fixture of any scope::

    @pytest.fixture(scope="session")
    def medplum() -> Iterator[MedplumServer]:
        yield from medplum_fixture()
    """
    with MedplumServer(**kwargs) as server:
        yield server
