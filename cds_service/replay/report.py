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
        hint = _STATUS_HINTS.get(outcome.status)
        out.write(
            f"  HTTP {outcome.status}: "
            + "; ".join(i.get("diagnostics", "") for i in issues)
            + (f" ({hint})" if hint else "")
            + "\n"
        )
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


_STATUS_HINTS = {
    401: "the service requires a signed JWT: --sign-key KEY.pem --iss ISS --kid KID, or run it with DVT_CDS_AUTH=off",
    404: "no such service at this URL: check --url and the service id",
}
WIDTH = 100  # the table fits a 100-column terminal: long cells wrap inside their column
_HOOKS = {"patient-view": "view", "order-select": "select", "order-sign": "sign", "encounter-discharge": "discharge"}


def table(outcomes: list[CallOutcome], out: TextIO, width: int = WIDTH) -> None:
    """One row per call: result, scenario, hook (abbreviated, legend below) and the cards — for a call as expected
    the cards it got (the ones expected), for a difference what was expected and what came, one topic a line."""
    head = ("result", "scenario", "hook", "cards")
    fixed = [len(head[0]), 46, max(len(h) for h in _HOOKS.values())]
    fixed[1] = min(fixed[1], max([len(head[1]), *(len(o.scenario.id) for o in outcomes)]))
    cards_width = max(width - sum(fixed) - 2 * 3, 12)
    widths = [*fixed, cards_width]
    rows: list[tuple[str, str, str, list[str]]] = []
    for o in outcomes:
        want = sorted(e.topic for e in o.call.expect.cards) or ["no card"]
        if o.call.expect.status != 200:
            want = [f"HTTP {o.call.expect.status}"]
        got = sorted(o.topics) or (["no card"] if o.status == 200 else [f"HTTP {o.status}"])
        cards = _fill(got, cards_width) if o.passed else ["expected:", *want, "got:", *got]
        rows.append(("pass" if o.passed else "FAIL", o.scenario.id, _HOOKS.get(o.call.hook, o.call.hook), cards))

    def emit(cells: list[list[str]]) -> None:
        for n in range(max(len(c) for c in cells)):
            line = "  ".join((c[n] if n < len(c) else "").ljust(widths[i]) for i, c in enumerate(cells))
            out.write(line.rstrip() + "\n")

    emit([[h] for h in head])
    out.write("  ".join("-" * w for w in widths) + "\n")
    for result, scenario, hook, cards in rows:
        emit(
            [
                [result],
                _wrap(scenario, widths[1]),
                _wrap(hook, widths[2]),
                [w for c in cards for w in _wrap(c, widths[3])],
            ]
        )
    out.write("hook: " + ", ".join(f"{short} = {hook}" for hook, short in _HOOKS.items()) + "\n")
    passed = sum(o.passed for o in outcomes)
    out.write(f"\n{passed}/{len(outcomes)} calls as expected\n")


def _wrap(text: str, width: int) -> list[str]:
    """Break at the width (a scenario id or a topic longer than its column), keeping every character."""
    return [text[i : i + width] for i in range(0, len(text), width)] or [""]


def _fill(items: list[str], width: int) -> list[str]:
    """Items joined with ", " into lines of at most ``width``; an item that does not fit starts the next line."""
    lines: list[str] = []
    for n, item in enumerate(items):
        text = item + ("," if n < len(items) - 1 else "")
        if lines and len(lines[-1]) + 1 + len(text) <= width:
            lines[-1] += " " + text
        else:
            lines.extend(_wrap(text, width))
    return lines or [""]


class Progress:
    """A one-line progress bar on stderr, only when it is a terminal (a redirected stderr gets no carriage-return
    lines)."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.done = total, 0
        self.enabled = self.stream.isatty()

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
