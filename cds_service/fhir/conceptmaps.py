"""A site's local codes mapped onto standard ones: FHIR R4 ``ConceptMap`` files named by ``DVT_CDS_CONCEPT_MAPS``.

Epic component and procedure ids, Oracle Health code set 72 event codes, a site's own encounter classes: a site
that maps them to LOINC, SNOMED, CPT or v3-ActCode in a ConceptMap gets them read like the standard codes. The
mapping is applied where data enters (the record and the draft orders of a call), before selection and
validation: each local coding keeps its place and the mapped standard coding is added beside it (a single
``Coding`` such as ``Encounter.class`` is replaced by the standard one). The site's mapped local codes are also
asked for by the code-filtered prefetch and fetch queries (``hooks/templates.py``).

Only ``equal``, ``equivalent`` and ``wider`` mappings are applied (the local concept is the standard one, or a
more specific kind of it); ``narrower``, ``inexact``, ``unmatched`` and ``disjoint`` would make the service read
something the source did not say, and are skipped. A file that is not a valid R4 ConceptMap stops the start with
an error naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cds_service.fhir.record import PatientRecord, model_class

APPLIED = frozenset({"equal", "equivalent", "wider"})


class ConceptMapError(ValueError):
    """A ConceptMap file that cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Target:
    system: str
    code: str
    display: str | None
    source_map: str  # the ConceptMap's id or file name, for the data note


@dataclass
class SiteConceptMaps:
    targets: dict[tuple[str, str], list[Target]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.targets)

    # --- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, paths: Sequence[str]) -> SiteConceptMaps:
        maps = cls()
        for path in paths:
            maps.add(_read(Path(path)), name=str(path))
        return maps

    def add(self, resource: dict[str, Any], *, name: str) -> None:
        given_id = resource.get("id")
        label = given_id if isinstance(given_id, str) else name
        if resource.get("status") not in ("draft", "active", "retired", "unknown"):
            raise ConceptMapError(f"{name}: status must be draft, active, retired or unknown")
        if not resource.get("group"):
            raise ConceptMapError(f"{name}: the ConceptMap has no group, so it maps nothing")
        for group in resource.get("group") or []:
            source, target = group.get("source"), group.get("target")
            if not isinstance(source, str) or not isinstance(target, str):
                raise ConceptMapError(f"{name}: every group needs a source and a target code system")
            for element in group.get("element") or []:
                code = element.get("code")
                if not isinstance(code, str):
                    raise ConceptMapError(f"{name}: an element of group {source} has no code")
                for mapped in element.get("target") or []:
                    if not mapped.get("equivalence"):
                        raise ConceptMapError(f"{name}: the target of {source}|{code} has no equivalence (R4 1..1)")
                    if mapped.get("equivalence") in APPLIED and isinstance(mapped.get("code"), str):
                        self.targets.setdefault((source, code), []).append(
                            Target(target, mapped["code"], mapped.get("display"), label)
                        )
        self.names.append(label)

    # --- use -----------------------------------------------------------------------------------------------------
    def local_codes(self, wanted: Iterable[tuple[str, str]]) -> list[str]:
        """``system|code`` of every local code that maps onto one of ``wanted`` (target system, code)."""
        wanted = set(wanted)
        return sorted(
            f"{system}|{code}"
            for (system, code), targets in self.targets.items()
            if any((t.system, t.code) in wanted for t in targets)
        )

    def apply(self, resource: Any) -> int:
        """Add the mapped standard coding beside every mapped local coding; the number of codings mapped."""
        if not self.targets:
            return 0
        return _walk(resource, self.targets)

    def apply_record(self, record: PatientRecord, extra: Iterable[dict[str, Any]] = ()) -> None:
        if not self.targets:
            return
        mapped = sum(self.apply(r) for resources in record.by_type.values() for r in resources)
        mapped += sum(self.apply(r) for r in extra)
        if mapped:
            record.notes.append(f"{mapped} local code(s) read through the site ConceptMap ({', '.join(self.names)})")


def _read(path: Path) -> dict[str, Any]:
    try:
        resource = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConceptMapError(f"{path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ConceptMapError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ConceptMapError(f"{path}: not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "ConceptMap":
        raise ConceptMapError(f"{path}: not a FHIR ConceptMap (resourceType must be ConceptMap)")
    try:
        model_class("ConceptMap").model_validate(resource)
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConceptMapError(
            f"{path}: not a valid FHIR R4 ConceptMap ({error.error_count()} error(s); {where}: {first['msg']})"
        ) from None
    return resource


def _walk(value: Any, targets: dict[tuple[str, str], list[Target]]) -> int:
    mapped = 0
    if isinstance(value, dict):
        codings = value.get("coding")
        if isinstance(codings, list):
            added = []
            present = {(c.get("system"), c.get("code")) for c in codings if isinstance(c, dict)}
            for coding in codings:
                if isinstance(coding, dict):
                    key: Any = (coding.get("system"), coding.get("code"))  # any JSON: a miss when not two strings
                    for target in targets.get(key, []):
                        if (target.system, target.code) not in present:
                            added.append(_coding(target))
                            present.add((target.system, target.code))
            codings.extend(added)
            mapped += len(added)
        klass = value.get("class")
        if isinstance(klass, dict) and "coding" not in klass:
            class_key: Any = (klass.get("system"), klass.get("code"))
            found = targets.get(class_key)
            if found:
                value["class"] = _coding(found[0])  # a single Coding cannot hold both: the standard one is read
                mapped += 1
        for key, child in value.items():
            if key not in ("coding", "class") and isinstance(child, dict | list):
                mapped += _walk(child, targets)
    elif isinstance(value, list):
        for child in value:
            mapped += _walk(child, targets)
    return mapped


def _coding(target: Target) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": target.system, "code": target.code, "userSelected": False}
    if target.display:
        coding["display"] = target.display
    return coding
