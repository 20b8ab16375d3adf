"""`dvt-cds serve --production`: gunicorn on a private unix socket, nginx in front on the public address.

One process supervises both, so the documented entry point (and the Docker image) is never gunicorn facing
clients alone. SIGTERM/SIGINT drain: ``/readyz`` answers 503 for ``DVT_CDS_DRAIN_S`` seconds, nginx stops
accepting and finishes what it holds, then gunicorn finishes its calls. nginx dying is restarted (a few times);
gunicorn dying ends the whole service with its exit code, for the orchestrator to restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from cds_service.front.config import FrontFiles, find_nginx, write
from cds_service.logs import log_fields
from cds_service.settings import Settings

log = logging.getLogger("cds_service.front")

_POLL_S = 0.1
_BOOT_S = 120.0  # gunicorn's master imports the app and warms the report reader before its socket answers
_STOP_S = 30.0  # gunicorn's graceful_timeout is 20 s
_NGINX_RESTARTS = 5  # within _RESTART_WINDOW_S; more means nginx cannot run here
_RESTART_WINDOW_S = 60.0


def gunicorn_command(bind: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "gunicorn", "--config", "python:cds_service.gunicorn_conf"]
    if bind:
        command += ["--bind", bind]  # the command line wins over the config file's DVT_CDS_HOST:PORT
    return [*command, "cds_service.wsgi:application"]


class Supervisor:
    def __init__(self, settings: Settings, env: Mapping[str, str], nginx: str, files: FrontFiles):
        self._settings = settings
        self._env = dict(env)
        self._nginx_path = nginx
        self._files = files
        self._drain_file = files.runtime / "draining"
        self._env["DVT_CDS_DRAIN_FILE"] = str(self._drain_file)
        self._signal: int | None = None
        self._reload = False
        self._gunicorn: subprocess.Popen[bytes] | None = None
        self._nginx: subprocess.Popen[bytes] | None = None
        self._nginx_starts: list[float] = []

    # -------------------------------------------------------------------------------------------------------------
    def run(self) -> int:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        try:
            self._gunicorn = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
                gunicorn_command(f"unix:{self._files.socket}"), env=self._env, start_new_session=True
            )
            if not self._wait_for_gunicorn():
                return self._stop(self._gunicorn.poll() or 1)
            self._start_nginx()
            log_fields(
                log,
                logging.INFO,
                "serving behind nginx",
                event="start",
                host=self._settings.host,
                port=self._settings.port,
                workers=self._settings.workers,
                threads=self._settings.threads,
            )
            return self._supervise()
        finally:
            shutil.rmtree(self._files.runtime, ignore_errors=True)

    def _supervise(self) -> int:
        gunicorn = self._started_gunicorn()
        while True:
            if self._signal is not None:
                return self._drain_and_stop()
            if self._reload:
                self._reload = False
                gunicorn.send_signal(signal.SIGHUP)  # new workers with the same settings
            code = gunicorn.poll()
            if code is not None:
                log_fields(log, logging.ERROR, "gunicorn exited; stopping", event="gunicorn-exit", exit_code=code)
                return self._stop(code or 1)
            if self._nginx is not None and self._nginx.poll() is not None:
                log_fields(log, logging.ERROR, "nginx exited", event="nginx-exit", exit_code=self._nginx.returncode)
                _kill_group(self._nginx)  # a killed master leaves its workers holding the port
                if not self._start_nginx():
                    return self._stop(1)
            time.sleep(_POLL_S)

    # -------------------------------------------------------------------------------------------------------------
    def _started_gunicorn(self) -> subprocess.Popen[bytes]:
        if self._gunicorn is None:
            raise RuntimeError("gunicorn has not been started")
        return self._gunicorn

    def _wait_for_gunicorn(self) -> bool:
        gunicorn = self._started_gunicorn()
        deadline = time.monotonic() + _BOOT_S
        while time.monotonic() < deadline and self._signal is None:
            if gunicorn.poll() is not None:
                return False
            if self._files.socket.exists():
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    try:
                        probe.connect(str(self._files.socket))
                        return True
                    except OSError:
                        pass
            time.sleep(_POLL_S)
        return False

    def _start_nginx(self) -> bool:
        now = time.monotonic()
        self._nginx_starts = [t for t in self._nginx_starts if now - t < _RESTART_WINDOW_S] + [now]
        if len(self._nginx_starts) > _NGINX_RESTARTS:
            log_fields(log, logging.ERROR, "nginx keeps exiting; stopping", event="nginx-give-up")
            return False
        command = [self._nginx_path, "-c", str(self._files.config), "-p", str(self._files.runtime), "-e", "stderr"]
        # Its own process group: workers orphaned by a dying master can be found and stopped with it.
        self._nginx = subprocess.Popen(command, env=self._env, start_new_session=True)  # noqa: S603 - our config
        return True

    def _drain_and_stop(self) -> int:
        if self._settings.drain_s > 0:
            self._drain_file.touch()  # /readyz answers 503: load balancers stop sending new calls
            log_fields(log, logging.INFO, "draining", event="drain", seconds=self._settings.drain_s)
            until = time.monotonic() + self._settings.drain_s
            while time.monotonic() < until and self._gunicorn is not None and self._gunicorn.poll() is None:
                time.sleep(_POLL_S)
        return self._stop(0)

    def _stop(self, code: int) -> int:
        """nginx first (it stops accepting, then finishes what it holds, which needs gunicorn), then gunicorn."""
        self._drain_file.touch()
        if self._nginx is not None:
            if self._nginx.poll() is None:
                self._nginx.send_signal(signal.SIGQUIT)
                _wait(self._nginx, _STOP_S)
            _kill_group(self._nginx)
        if self._gunicorn is not None:
            if self._gunicorn.poll() is None:
                self._gunicorn.send_signal(signal.SIGTERM)
                _wait(self._gunicorn, _STOP_S)
            _kill_group(self._gunicorn)
        log_fields(log, logging.INFO, "stopped", event="stop", exit_code=code)
        return code

    def _on_stop(self, number: int, _frame: FrameType | None) -> None:
        self._signal = number

    def _on_reload(self, _number: int, _frame: FrameType | None) -> None:
        self._reload = True


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Whatever is left of a child's process group once the child itself has exited (orphaned workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait(process: subprocess.Popen[bytes], seconds: float) -> None:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve_production(settings: Settings, env: Mapping[str, str]) -> int:
    """Run the production service; returns the exit code (2 when nginx is needed and missing)."""
    if settings.front == "none":
        log_fields(
            log,
            logging.WARNING,
            "DVT_CDS_FRONT=none: gunicorn faces clients directly; run it only behind a buffering proxy "
            "(slow clients can hold every thread)",
            event="no-front",
        )
        command = gunicorn_command()
        os.execve(sys.executable, command, dict(env))  # noqa: S606 - our own interpreter, fixed arguments
    nginx = find_nginx()
    if nginx is None:
        print(
            "dvt-cds: nginx not found: install it (Debian: apt-get install nginx) or, only behind your own "
            "buffering proxy, set DVT_CDS_FRONT=none",
            file=sys.stderr,
        )
        return 2
    files = write(settings, Path(tempfile.mkdtemp(prefix="dvt-cds-")))
    check = subprocess.run(  # noqa: S603 - a bad setting stops the start with nginx's own words
        [nginx, "-t", "-q", "-c", str(files.config), "-p", str(files.runtime), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        shutil.rmtree(files.runtime, ignore_errors=True)
        print(f"dvt-cds: nginx cannot start: {check.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return 2
    return Supervisor(settings, env, nginx, files).run()
