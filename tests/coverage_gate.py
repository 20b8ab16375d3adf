"""The per-package branch-coverage gate of `make test`.

coverage's own ``fail_under`` gates the total only; this reads the JSON report (``coverage json``) and gates each
package of the clinical core as well. A package is one folder's own modules (``cds_service/clinical`` does not count
``cds_service/clinical/reports``, which is gated on its own). Its percentage is coverage's: covered statements plus
covered branches over statements plus branches.

    python tests/coverage_gate.py coverage.json [--min 90]

Prints one table of every measured package (gated ones marked ``*``) and exits 1 naming each package, and the total,
under the minimum.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

MINIMUM = 90.0
# The clinical core, whose every package must reach the minimum on its own: the rules (clinical, and any package
# under it), the cards they become, the FHIR reading they rest on, and the hook definitions.
GATED_PREFIXES = ("cds_service/clinical", "cds_service/cards", "cds_service/fhir", "hooks")


@dataclass
class Tally:
    statements: int = 0
    covered_statements: int = 0
    branches: int = 0
    covered_branches: int = 0

    def add(self, summary: Mapping[str, Any]) -> None:
        self.statements += summary["num_statements"]
        self.covered_statements += summary["covered_lines"]
        self.branches += summary.get("num_branches", 0)
        self.covered_branches += summary.get("covered_branches", 0)

    @property
    def percent(self) -> float:
        total = self.statements + self.branches
        return 100.0 if total == 0 else 100.0 * (self.covered_statements + self.covered_branches) / total


def gated(package: str) -> bool:
    return any(package == prefix or package.startswith(prefix + "/") for prefix in GATED_PREFIXES)


def packages(files: Mapping[str, Mapping[str, Any]]) -> dict[str, Tally]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    for path, data in files.items():
        tallies[PurePosixPath(path.replace("\\", "/")).parent.as_posix()].add(data["summary"])
    return dict(sorted(tallies.items()))


def table(tallies: Mapping[str, Tally], total: Tally, minimum: float) -> Iterable[str]:
    width = max(len("TOTAL"), *(len(name) + 2 for name in tallies))
    yield f"{'package':<{width}} {'stmts':>6} {'miss':>5} {'branch':>6} {'part':>5} {'cover':>7}"
    for name, tally in [*tallies.items(), ("TOTAL", total)]:
        label = f"{name} *" if gated(name) else name
        mark = "  < minimum" if (gated(name) or name == "TOTAL") and tally.percent < minimum else ""
        yield (
            f"{label:<{width}} {tally.statements:>6} {tally.statements - tally.covered_statements:>5} "
            f"{tally.branches:>6} {tally.branches - tally.covered_branches:>5} {tally.percent:>6.1f}%{mark}"
        )
    yield f"* gated: each must reach {minimum:g} % on its own, as must the total"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="the JSON report of `coverage json`")
    parser.add_argument("--min", type=float, default=MINIMUM, help="the minimum percentage (default %(default)s)")
    args = parser.parse_args(argv)
    with open(args.report, encoding="utf-8") as handle:
        report = json.load(handle)
    tallies = packages(report["files"])
    total = Tally()
    total.add(report["totals"])
    for line in table(tallies, total, args.min):
        print(line)
    sys.stdout.flush()  # the table before the verdict on stderr, also when both go to one pipe
    failing = [name for name, tally in tallies.items() if gated(name) and tally.percent < args.min]
    if total.percent < args.min:
        failing.append("TOTAL")
    missing = [prefix for prefix in GATED_PREFIXES if prefix not in tallies]
    for prefix in missing:
        print(f"coverage gate: no data for the gated package {prefix} (was it measured?)", file=sys.stderr)
    for name in failing:
        print(
            f"coverage gate: {name} is at {tallies.get(name, total).percent:.1f} %, "
            f"under the minimum of {args.min:g} %",
            file=sys.stderr,
        )
    return 1 if failing or missing else 0


if __name__ == "__main__":
    sys.exit(main())
