"""docs/clinical/RULES.md names real code and real tests.

Every rule (a ``### R-…`` heading) must have a source, at least one piece of code and at least one test; every
``module:name`` must import and resolve (``getattr``, dotted for members), every ``tests/…py::test_name`` must be a
test function of that file (read with ``ast``, so no test module is imported), and every ``scn:<id>`` must be a
scenario of ``fhir_fixtures/manifest.json``. Code citing a rule (``RULES.md R-…``) must cite one that exists.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "docs" / "clinical" / "RULES.md"

HEADING = re.compile(r"^### (R-[A-Z]+-\d+) · (.+)$")
ITEM = re.compile(r"^- (Source|Code|Tests|Scenarios): (.*)$")
CODE_REF = re.compile(r"`((?:cds_service|hooks)(?:\.\w+)*):(\w+(?:\.\w+)*)`")
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`")
SCENARIO_REF = re.compile(r"\bscn:([\w-]+)")
CITED = re.compile(r"\bR-[A-Z]+-(?:\d+|\*)")


@dataclass
class Rule:
    rule_id: str
    title: str
    line: int
    source: str = ""
    code: list[tuple[str, str]] = field(default_factory=list)
    tests: list[tuple[str, str]] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)


def parse(text: str) -> list[Rule]:
    rules: list[Rule] = []
    for number, line in enumerate(text.splitlines(), 1):
        heading = HEADING.match(line)
        if heading:
            rules.append(Rule(heading.group(1), heading.group(2), number))
            continue
        item = ITEM.match(line)
        if not item or not rules:
            continue
        kind, value = item.groups()
        rule = rules[-1]
        if kind == "Source":
            rule.source = value.strip()
        elif kind == "Code":
            rule.code += CODE_REF.findall(value)
        elif kind == "Tests":
            rule.tests += TEST_REF.findall(value)
        else:
            rule.scenarios += SCENARIO_REF.findall(value)
    return rules


@cache
def all_rules() -> tuple[Rule, ...]:
    return tuple(parse(RULES.read_text(encoding="utf-8")))


@cache
def functions_of(path: str) -> frozenset[str]:
    """The test functions of a test file: module level and ``Class::test`` methods, without importing it."""
    file = ROOT / path
    if not file.is_file():
        return frozenset()
    tree = ast.parse(file.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.add(node.name)
    return frozenset(names)


@cache
def scenario_ids() -> frozenset[str]:
    manifest = json.loads((ROOT / "fhir_fixtures" / "manifest.json").read_text(encoding="utf-8"))
    return frozenset(s["id"] for s in manifest["scenarios"])


def resolve(module: str, name: str) -> object:
    target: object = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target


def problems(rules: tuple[Rule, ...] | list[Rule]) -> list[str]:
    found: list[str] = []
    seen: set[str] = set()
    for rule in rules:
        where = f"{rule.rule_id} (RULES.md line {rule.line})"
        if rule.rule_id in seen:
            found.append(f"{where}: duplicate rule id")
        seen.add(rule.rule_id)
        if not rule.source:
            found.append(f"{where}: no Source")
        if not rule.code:
            found.append(f"{where}: no Code")
        if not rule.tests:
            found.append(f"{where}: no Tests")
        for module, name in rule.code:
            try:
                resolve(module, name)
            except (ImportError, AttributeError) as error:
                found.append(f"{where}: {module}:{name} does not exist ({error})")
        for path, name in rule.tests:
            if name not in functions_of(path):
                found.append(f"{where}: {path}::{name} is not a test")
        for scenario in rule.scenarios:
            if scenario not in scenario_ids():
                found.append(f"{where}: scn:{scenario} is not in fhir_fixtures/manifest.json")
    return found


def test_the_document_has_rules() -> None:
    rules = all_rules()
    assert len(rules) >= 60
    assert all(r.rule_id.startswith("R-") for r in rules)


def test_every_rule_names_a_source_real_code_and_real_tests() -> None:
    assert problems(all_rules()) == []


def test_code_cites_only_rules_that_exist() -> None:
    """Every rule id in a file that cites RULES.md exists; ``R-RISK-*`` needs at least one ``R-RISK-`` rule."""
    ids = {r.rule_id for r in all_rules()}
    unknown: list[str] = []
    cited = 0
    for folder in ("cds_service", "hooks"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".json") or not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            if "RULES.md" not in text:
                continue
            for rule_id in CITED.findall(text):
                cited += 1
                known = any(i.startswith(rule_id[:-1]) for i in ids) if rule_id.endswith("*") else rule_id in ids
                if not known:
                    unknown.append(f"{path.relative_to(ROOT)}: {rule_id}")
    assert cited > 0
    assert unknown == []


def test_no_reference_to_a_file_outside_the_repository() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("cds_service", "hooks")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".json") and path.is_file() and "KNOWLEDGE.md" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


BROKEN = """
### R-TEST-1 · A rule with a wrong function, a wrong test and no source
- Code: `cds_service.clinical.ddimer:no_such_function`, `cds_service.clinical.thresholds:DDIMER_FEU_CUTOFF.nope`
- Tests: `tests/clinical/test_ddimer.py::test_no_such_test`, `tests/no_such_file.py::test_x`
- Scenarios: scn:no-such-scenario

### R-TEST-2 · A rule with no code and no test
- Source: Project.
"""


@pytest.mark.parametrize(
    "expected",
    [
        "R-TEST-1 (RULES.md line 2): no Source",
        "cds_service.clinical.ddimer:no_such_function does not exist",
        "cds_service.clinical.thresholds:DDIMER_FEU_CUTOFF.nope does not exist",
        "tests/clinical/test_ddimer.py::test_no_such_test is not a test",
        "tests/no_such_file.py::test_x is not a test",
        "scn:no-such-scenario is not in fhir_fixtures/manifest.json",
        "R-TEST-2 (RULES.md line 7): no Code",
        "R-TEST-2 (RULES.md line 7): no Tests",
    ],
)
def test_a_wrong_name_is_caught(expected: str) -> None:
    assert any(expected in p for p in problems(parse(BROKEN)))
