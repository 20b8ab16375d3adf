"""The installed `dvt-cds` command run as a real process, as an operator runs it: its path, a clean environment,
a free port, and the one-line refusal every bad setting must produce."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def dvt_cds() -> str:
    found = shutil.which("dvt-cds", path=str(Path(sys.executable).parent))
    assert found is not None, "the dvt-cds console script is not installed in this environment"
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This process's environment without any DVT_CDS_ setting, plus a development baseline and ``settings``; its
    database is at the newest schema revision, as an operator's is after `dvt-cds db upgrade`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVT_CDS_")}
    env.update(
        {
            "DVT_CDS_AUTH": "off",
            "DVT_CDS_HOST": "127.0.0.1",
            "DVT_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        }
    )
    env.update(settings)
    upgrade_database(env["DVT_CDS_DATABASE_URL"])
    return env


def upgrade_database(url: str) -> None:
    """What `dvt-cds db upgrade` does, in this process (a throwaway database; the command itself is tested in
    tests/test_migrations.py)."""
    from cds_service.store import Store

    Store(url, schema="upgrade", outbox_path=os.devnull).close()


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([dvt_cds(), *args], env=env, capture_output=True, text=True, timeout=30, check=False)


def assert_one_line_naming(result: subprocess.CompletedProcess[str], prefix: str, path: Path, problem: str) -> None:
    """Exit code 2 and one line on stderr: the setting, the file and what is wrong — never a traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prefix} {path}:")
    assert problem in lines[0]
    assert result.stdout == ""
