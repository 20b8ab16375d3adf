"""Does this CodeableConcept fall in value set X? Membership tests over raw FHIR JSON.

Value sets are FHIR ValueSet JSON files in ``valuesets/`` (each names its source in ``description``). This
module understands the subset of ``compose`` they use:

* ``include.concept``: enumerated codes (with optional designations, e.g. the vein a code names);
* ``include.filter`` with ``op: regex`` on ``code``: code-structure rules such as ICD-10-CM C00-C96;
* the project pseudo-system ``urn:distal-dvt-cds:text-keyword``: words looked for in ``text`` and
  ``coding.display`` when no coding of the concept is recognised, for the text-only and locally coded
  concepts real EHRs send. A text match is reported as such, so a card can say "recognised from text";
* ``exclude`` with either form.

Codes are compared after normalisation: code-system URI aliases (OIDs) map to the canonical URI, and
ICD-10-CM codes are upper-cased with the dot restored (``I82461`` → ``I82.461``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
TEXT_KEYWORD = "urn:distal-dvt-cds:text-keyword"
DESIGNATION = "urn:distal-dvt-cds:designation"

# Other spellings of the same code systems seen in EHR data (HL7 OIDs, older URIs).
_SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "http://hl7.org/fhir/sid/icd-10-us": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "http://snomed.info/sct/": SNOMED,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "http://loinc.org/": LOINC,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
    "urn:oid:2.16.840.1.113883.6.12": CPT,
    "http://www.ama-assn.org/go/cpt/": CPT,
    "urn:oid:2.16.840.1.113883.5.4": ACT_CODE,
    "http://hl7.org/fhir/v3/ActCode": ACT_CODE,
    # MIMIC-IV on FHIR writes ICD-10-CM (undotted) under its own systems (docs/clinical/VENDOR-SHAPES.md §3).
    "http://mimic.mit.edu/fhir/mimic/CodeSystem/mimic-diagnosis-icd10": ICD10CM,
    "http://fhir.mimic.mit.edu/CodeSystem/mimic-diagnosis-icd10": ICD10CM,
    "http://fhir.mimic.mit.edu/CodeSystem/diagnosis-icd10": ICD10CM,
}
# The spellings a FHIR server may have stored a code under, asked for in code-filtered queries so a server that
# matches systems literally still returns them (Epic sends CPT under its OID, for instance).
_QUERY_SPELLINGS = {
    CPT: ("urn:oid:2.16.840.1.113883.6.12",),
    ICD10CM: ("urn:oid:2.16.840.1.113883.6.90",),
    SNOMED: ("urn:oid:2.16.840.1.113883.6.96",),
    RXNORM: ("urn:oid:2.16.840.1.113883.6.88",),
}

_ICD_NO_DOT = re.compile(r"^([A-Z][0-9][0-9A-Z])([0-9A-Z]{1,4})$")


def canonical_system(system: object) -> str:
    if not isinstance(system, str) or not system:
        return ""
    return _SYSTEM_ALIASES.get(system, system)


def query_systems(system: str) -> tuple[str, ...]:
    """The canonical system URI and the other spellings servers store it under."""
    return (system, *_QUERY_SPELLINGS.get(system, ()))


def normalize_code(system: str, code: str) -> str:
    code = code.strip()
    if system == ICD10CM:
        code = code.upper().replace(" ", "")
        match = _ICD_NO_DOT.match(code)
        if match:
            code = f"{match.group(1)}.{match.group(2)}"
    return code


@dataclass(frozen=True)
class Match:
    """How a concept matched: by which coding (system, code, display) or by text."""

    valueset: str
    how: Literal["code", "text"]
    system: str
    code: str
    display: str
    designations: dict[str, str] = field(default_factory=dict)

    @property
    def by_text(self) -> bool:
        return self.how == "text"

    def label(self) -> str:
        if self.by_text:
            return f'text "{self.display}"'
        short = {ICD10CM: "ICD-10-CM", SNOMED: "SNOMED", LOINC: "LOINC", RXNORM: "RxNorm", CPT: "CPT"}
        return f"{short.get(self.system, self.system)} {self.code}"


@dataclass
class _Part:
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)  # normalised code -> concept
    patterns: list[re.Pattern[str]] = field(default_factory=list)

    def find(self, system: str, code: str) -> dict[str, Any] | None:
        concept = self.codes.get(code)
        if concept is not None:
            return concept
        if any(p.fullmatch(code) for p in self.patterns):
            return {"code": code}
        return None


_CACHE_LIMIT = 50_000
ConceptKey = tuple[tuple[str, str, str], ...]


def concept_key(concept: dict[str, Any]) -> ConceptKey:
    """A hashable summary of a CodeableConcept: its (system, code, display) codings and its text."""
    codings = concept.get("coding")
    parts: list[tuple[str, str, str]] = []
    if isinstance(codings, list):
        for coding in codings:
            if not isinstance(coding, dict):
                continue
            system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
            parts.append(
                (
                    system if isinstance(system, str) else "",
                    code if isinstance(code, str) else "",
                    display if isinstance(display, str) else "",
                )
            )
    text = concept.get("text")
    parts.append(("#text", "", text if isinstance(text, str) else ""))
    return tuple(parts)


@dataclass
class ValueSet:
    id: str
    title: str
    source: str
    include: dict[str, _Part]
    exclude: dict[str, _Part]
    keywords: re.Pattern[str] | None
    exclude_keywords: re.Pattern[str] | None
    _cache: dict[ConceptKey, Match | None] = field(default_factory=dict, repr=False)

    @property
    def systems(self) -> frozenset[str]:
        return frozenset(self.include)

    def coding_match(self, coding: dict[str, Any]) -> Match | None:
        system = canonical_system(coding.get("system"))
        code = coding.get("code")
        if not isinstance(code, str) or not code or system not in self.include:
            return None
        code = normalize_code(system, code)
        excluded = self.exclude.get(system)
        if excluded is not None and excluded.find(system, code) is not None:
            return None
        concept = self.include[system].find(system, code)
        if concept is None:
            return None
        display = coding.get("display") if isinstance(coding.get("display"), str) else concept.get("display", "")
        return Match(self.id, "code", system, code, display or "", _designations(concept))

    def text_match(self, text: str) -> bool:
        if self.keywords is None:
            return False
        lowered = text.lower()
        if not self.keywords.search(lowered):
            return False
        return self.exclude_keywords is None or not self.exclude_keywords.search(lowered)

    def match(self, concept: Any) -> Match | None:
        """Match a raw CodeableConcept (dict); text is consulted only when no coding matched.

        Results are cached by the concept's codings and text (value sets never change), so the same code seen
        again — in this record or the next — costs one dictionary lookup."""
        if not isinstance(concept, dict):
            return None
        return self.match_key(concept_key(concept))

    def match_key(self, key: ConceptKey) -> Match | None:
        if key in self._cache:
            return self._cache[key]
        found = self._match(key)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _match(self, key: ConceptKey) -> Match | None:
        codings = key[:-1]
        for system, code, display in codings:
            if code:
                found = self.coding_match({"system": system, "code": code, "display": display or None})
                if found is not None:
                    return found
        if self.keywords is None:
            return None
        # A code that is a name (MIMIC's mimic-medication-name "Apixaban", codes with no display) is words too.
        named = (code for _, code, display in codings if not display and _is_name(code))
        for text in (key[-1][2], *(display for _, _, display in codings), *named):
            if text.strip() and self.text_match(text):
                return Match(self.id, "text", "", "", text.strip()[:120])
        return None

    def contains(self, system: str, code: str) -> bool:
        return self.coding_match({"system": system, "code": code}) is not None

    def concepts(self, system: str) -> list[dict[str, Any]]:
        part = self.include.get(canonical_system(system))
        return list(part.codes.values()) if part else []


def _is_name(code: str) -> bool:
    return len(code) >= 4 and not any(c.isdigit() for c in code) and any(c.isalpha() for c in code)


def _designations(concept: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for d in concept.get("designation", []) or []:
        use = d.get("use") or {}
        if use.get("system") == DESIGNATION and isinstance(use.get("code"), str) and isinstance(d.get("value"), str):
            found[use["code"]] = d["value"]
    return found


def _keywords(words: list[str]) -> re.Pattern[str] | None:
    """One alternation for all of a value set's words: a word must start at a word boundary."""
    if not words:
        return None
    alternatives = "|".join(re.escape(w.lower()) for w in sorted(set(words), key=len, reverse=True))
    return re.compile(r"(?<![a-z0-9])(?:" + alternatives + ")")


def _parts(items: Iterable[dict[str, Any]]) -> tuple[dict[str, _Part], list[str]]:
    parts: dict[str, _Part] = {}
    keywords: list[str] = []
    for item in items:
        system = canonical_system(item.get("system"))
        if system == TEXT_KEYWORD:
            keywords.extend(c["code"] for c in item.get("concept", []))
            continue
        part = parts.setdefault(system, _Part())
        for concept in item.get("concept", []):
            part.codes[normalize_code(system, concept["code"])] = concept
        for flt in item.get("filter", []):
            if flt.get("op") != "regex" or flt.get("property") != "code":
                raise ValueError(f"unsupported filter {flt}")
            part.patterns.append(re.compile(flt["value"]))
    return parts, keywords


def parse_valueset(resource: dict[str, Any]) -> ValueSet:
    compose = resource.get("compose", {})
    include, keywords = _parts(compose.get("include", []))
    exclude, exclude_keywords = _parts(compose.get("exclude", []))
    return ValueSet(
        id=resource["id"],
        title=resource.get("title", resource["id"]),
        source=resource.get("description", ""),
        include=include,
        exclude=exclude,
        keywords=_keywords(keywords),
        exclude_keywords=_keywords(exclude_keywords),
    )


def valueset_ids() -> list[str]:
    folder = resources.files("cds_service.clinical") / "valuesets"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


@cache
def valueset(valueset_id: str) -> ValueSet:
    """The compiled value set (cached for the process: value sets are immutable package data)."""
    path = resources.files("cds_service.clinical") / "valuesets" / f"{valueset_id}.json"
    return parse_valueset(json.loads(path.read_text(encoding="utf-8")))


_ANY_CACHE: dict[tuple[tuple[str, ...], ConceptKey], Match | None] = {}


def match_any(concept: Any, valueset_ids: Iterable[str]) -> Match | None:
    """The first of several value sets the concept falls in (cached: one lookup for a code seen before)."""
    if not isinstance(concept, dict):
        return None
    ids = valueset_ids if isinstance(valueset_ids, tuple) else tuple(valueset_ids)
    key = concept_key(concept)
    cache_key = (ids, key)
    if cache_key in _ANY_CACHE:
        return _ANY_CACHE[cache_key]
    found = None
    for vs_id in ids:
        found = valueset(vs_id).match_key(key)
        if found is not None:
            break
    if len(_ANY_CACHE) >= _CACHE_LIMIT:
        _ANY_CACHE.clear()
    _ANY_CACHE[cache_key] = found
    return found


def codes_of(valueset_id: str, system: str) -> list[str]:
    """The enumerated codes of one system in a value set (used to build prefetch code filters)."""
    return [c["code"] for c in valueset(valueset_id).concepts(system)]
