"""fhir_fixtures/README.md, generated from the manifest (a test checks they agree).

python -m cds_service.replay.readme > fhir_fixtures/README.md
"""

from __future__ import annotations

import sys

from cds_service.replay.scenarios import Library, default_folder

HEADER = """# FHIR fixtures: the scenario library

One FHIR R4 `collection` Bundle per clinical scenario in `scenarios/`, and `manifest.json` stating for each the
hook calls to make (context, draft orders, how the EHR shapes the prefetch) and the cards expected back. Dates are
written relative to the manifest's anchor ({anchor}); `dvt-cds replay` moves them to today, the tests run the
service with its clock at the anchor. Every resource validates against FHIR R4 (fhir.resources R4B), every
reference resolves inside its bundle, and resource ids are unique across the library so all scenarios can be
loaded into one FHIR server (`dvt-cds load-fixtures`).

Replay one scenario against a running service (`make run`), or all of them with a pass/fail table:

```sh
.venv/bin/dvt-cds replay distal-muscular-no-risk-factors
.venv/bin/dvt-cds replay --all
.venv/bin/dvt-cds replay --all --no-prefetch      # the service fetches everything from a FHIR server instead
```

This file is generated: `python -m cds_service.replay.readme > fhir_fixtures/README.md`.

| scenario | what it is | hook → expected cards | covers |
|---|---|---|---|
"""


def render(library: Library) -> str:
    rows = []
    for scenario in library.scenarios:
        calls = []
        for call in scenario.calls:
            cards = ", ".join(
                f"`{c.topic}`" + (f" ({c.indicator})" if c.indicator else "") for c in call.expect.cards
            ) or ("no card" if call.expect.status == 200 else f"HTTP {call.expect.status}")
            shapes = ", ".join(f"{k}: {v}" for k, v in sorted(call.prefetch_shape.items()))
            calls.append(f"{call.hook} → {cards}" + (f" [prefetch {shapes}]" if shapes else ""))
        cell = lambda text: text.replace("|", "\\|").replace("\n", " ")  # noqa: E731
        why = f" *Shape:* {cell(scenario.why)}" if scenario.why else ""
        rows.append(
            f"| `{scenario.id}` | **{cell(scenario.title)}** — {cell(scenario.description)}{why} | "
            f"{'<br>'.join(cell(c) for c in calls)} | {cell('; '.join(scenario.covers))} |"
        )
    return HEADER.format(anchor=library.anchor.isoformat().replace("+00:00", "Z")) + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(Library(default_folder())))
