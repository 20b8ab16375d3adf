"""How replay prints: cards for a person to read, a pass/fail table, or JSON."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from cds_service.replay.runner import CallOutcome, recommended_option


def describe_cards(outcome: CallOutcome, out: TextIO) -> None:
    head = f"{outcome.scenario.id} · {outcome.call.hook}"
    out.write(f"\n{head}\n{'─' * len(head)}\n")
    if outcome.status != 200:
        issues = outcome.body.get("issue", []) if isinstance(outcome.body, dict) else []
        out.write(f"  HTTP {outcome.status}: " + "; ".join(i.get("diagnostics", "") for i in issues) + "\n")
    if not outcome.cards and outcome.status == 200:
        out.write("  (no cards)\n")
    for card in outcome.cards:
        topic = card.get("source", {}).get("topic", {}).get("code", "?")
        out.write(f"  [{card.get('indicator', '?').upper()}] {topic}\n    {card.get('summary', '')}\n")
        for suggestion in card.get("suggestions", []):
            mark = "★" if suggestion.get("isRecommended") else "·"
            actions = ", ".join(
                f"{a.get('type')} {a.get('resource', {}).get('resourceType') or a.get('resourceId', '')}".strip()
                for a in suggestion.get("actions", [])
            )
            out.write(f"    {mark} {suggestion.get('label', '')}" + (f"  [{actions}]" if actions else "") + "\n")
    if outcome.problems:
        out.write("  ✗ differs from the manifest: " + "; ".join(outcome.problems) + "\n")


def as_json(outcome: CallOutcome) -> dict[str, Any]:
    return {
        "scenario": outcome.scenario.id,
        "hook": outcome.call.hook,
        "status": outcome.status,
        "passed": outcome.passed,
        "problems": outcome.problems,
        "response": outcome.body,
    }


def table(outcomes: list[CallOutcome], out: TextIO) -> None:
    rows = [("scenario", "hook", "expected", "got", "result")]
    for o in outcomes:
        want = ", ".join(sorted(e.topic for e in o.call.expect.cards)) or "no card"
        if o.call.expect.status != 200:
            want = f"HTTP {o.call.expect.status}"
        got = ", ".join(sorted(o.topics)) or ("no card" if o.status == 200 else f"HTTP {o.status}")
        rows.append((o.scenario.id, o.call.hook, want, got, "pass" if o.passed else "FAIL"))
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(5)]
    for n, row in enumerate(rows):
        out.write("  ".join(cell[:60].ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    passed = sum(o.passed for o in outcomes)
    out.write(f"\n{passed}/{len(outcomes)} calls as expected\n")


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or when asked)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, force: bool = False):
        self.total, self.done, self.stream = total, 0, stream
        self.enabled = force or stream.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        self.stream.write(f"\r[{'█' * filled}{' ' * (width - filled)}] {self.done}/{self.total} {label[:40]:40}")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


__all__ = ["Progress", "as_json", "describe_cards", "recommended_option", "table"]
