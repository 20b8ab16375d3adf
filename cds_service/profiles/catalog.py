"""A site's order catalog (``DVT_CDS_ORDER_CATALOG``): the service's order keys mapped to the site's own codes.

Epic ignores the details of a suggested MedicationRequest or ServiceRequest: the order comes from the site's
medication or procedure record, a preference-list item or an order set, named by a code
(``urn:com.epic.cdshooks.action.code.system.preference-list-item``, ``...orderset-item``). Other EHRs order by
their local procedure codes. The catalog maps each order the service can propose (a stable key,
``cds_service.clinical.regimens.ORDER_KEYS``) to those codings: a mapped order carries the site's coding first,
before RxNorm or LOINC; an unmapped one is sent as the service built it.

File format::

    {"orders": {"anticoagulation.apixaban.3-months":
                   [{"system": "urn:com.epic.cdshooks.action.code.system.preference-list-item",
                     "code": "123456", "display": "apixaban 10 mg BID x7d, then 5 mg BID"}],
                "orderset.serial-imaging.bilateral":
                   [{"system": "urn:com.epic.cdshooks.action.code.system.orderset-item", "code": "7890"}]}}

A file that is not valid, or names a key the service does not know (a typo would silently map nothing), stops the
start with the file and the error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cds_service.clinical.regimens import ORDER_KEYS


class CatalogError(ValueError):
    """An order catalog that cannot be used: the message names the file and what is wrong."""


class SiteCoding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str | None = None


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # An empty list would count as mapped and send Epic an order set with no code: refused.
    orders: dict[str, Annotated[list[SiteCoding], Field(min_length=1)]] = Field(default_factory=dict)


@dataclass(frozen=True)
class OrderCatalog:
    orders: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def codings(self, key: str | None) -> list[dict[str, Any]]:
        return [dict(c) for c in self.orders.get(key or "", [])]

    def has(self, key: str | None) -> bool:
        return bool(key) and key in self.orders

    @classmethod
    def load(cls, path: str | None) -> OrderCatalog:
        if not path:
            return cls()
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise CatalogError(f"{path}: cannot be read ({error.strerror or error})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CatalogError(f"{path}: not JSON ({error})") from None
        if not isinstance(raw, dict):
            raise CatalogError(f'{path}: not a valid order catalog (a JSON object {{"orders": {{...}}}} is expected)')
        try:
            parsed = _CatalogFile.model_validate(raw)
        except ValidationError as error:
            first = error.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "file"
            raise CatalogError(f"{path}: not a valid order catalog ({where}: {first['msg']})") from None
        unknown = sorted(set(parsed.orders) - set(ORDER_KEYS))
        if unknown:
            raise CatalogError(f"{path}: unknown order key(s) {', '.join(unknown)} (see dvt-cds ehr-config)")
        return cls({k: [c.model_dump(exclude_none=True) for c in v] for k, v in parsed.orders.items()})
