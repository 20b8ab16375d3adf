"""Write requirements.lock: every package the image installs, pinned with its sha256 (`make lock`).

pip's own resolver chooses the versions (``pip install --dry-run --report``, against PyPI only, nothing from this
machine's pip configuration) for the project with its ``postgres`` extra, plus the build backend the Dockerfile
needs to install the project without network access to an index. Run it with the interpreter the image uses
(CPython 3.11 on linux/amd64: the Dockerfile's FROM line): wheels are chosen for the running interpreter and
platform, and the lock says which. The Dockerfile installs with ``--require-hashes --no-deps``, so the image gets
exactly these files.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
BUILD = ["setuptools>=68", "wheel"]  # pyproject.toml's build-system.requires


def resolve() -> list[dict]:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--isolated",
                "--quiet",
                "--dry-run",
                "--ignore-installed",
                "--index-url",
                "https://pypi.org/simple",
                "--report",
                str(report),
                f"{ROOT}[postgres]",
                *BUILD,
            ],
            check=True,
        )
        return json.loads(report.read_text())["install"]


def lines(items: list[dict]) -> list[str]:
    found = []
    for item in items:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        archive = item["download_info"].get("archive_info")
        if archive is None:
            continue  # the project itself (a local directory): the Dockerfile installs it from the copied source
        digest = archive.get("hashes", {}).get("sha256") or archive["hash"].removeprefix("sha256=")
        found.append(f"{name.lower()}=={version} --hash=sha256:{digest}")
    return sorted(found)


def main() -> int:
    python = f"CPython {platform.python_version()} on {sys.platform}/{platform.machine()}"
    header = [
        "# The image's Python packages, pinned with their hashes: `make lock` (deploy/lock_requirements.py) writes it.",
        f"# Resolved by pip for {python}, the Dockerfile's base image; run it there after changing dependencies.",
    ]
    LOCK.write_text("\n".join([*header, *lines(resolve())]) + "\n")
    print(f"wrote {LOCK.relative_to(ROOT)} for {python}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
