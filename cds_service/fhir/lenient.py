"""Shapes real clients send that break strict R4, normalised before validation (lenient at the edge).

The CDS Hooks sandbox drafts a MedicationRequest whose ``category`` and ``reasonCode`` are single objects where R4
has lists; other clients do the same with ``dosageInstruction``, ``note`` or ``bodySite``. A single object where
the R4 model has a list is wrapped into a one-item list, all the way down (``dosageInstruction[].doseAndRate``,
``timing.repeat``...). Nothing else is changed: a value that is wrong in any other way still fails validation and
is reported.

Which elements are lists comes from the ``fhir.resources`` R4B models themselves, so no list is hand-kept here.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

from cds_service.fhir.record import model_class

_Shape = dict[str, tuple[bool, Any]]  # JSON name -> (is a list, the model class of its items or None)


def normalize(resource: dict[str, Any]) -> int:
    """Wrap single objects that belong in lists, in place; the number of elements changed."""
    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        return 0
    try:
        klass = model_class(kind)
    except (KeyError, ValueError, AttributeError):
        return 0
    return _normalize(resource, klass)


def _normalize(value: dict[str, Any], klass: Any) -> int:
    changed = 0
    shape = _shape(klass)
    for key, child in list(value.items()):
        known = shape.get(key)
        if known is None:
            continue
        is_list, item_class = known
        if is_list and isinstance(child, dict):
            value[key] = child = [child]
            changed += 1
        for item in child if isinstance(child, list) else [child]:
            if not isinstance(item, dict):
                continue
            nested = item_class
            if isinstance(item.get("resourceType"), str):  # a contained resource: its own type decides
                try:
                    nested = model_class(item["resourceType"])
                except (KeyError, ValueError, AttributeError):
                    continue
            if nested is not None:
                changed += _normalize(item, nested)
    return changed


@cache
def _shape(klass: Any) -> _Shape:
    shape: _Shape = {}
    for name, field in klass.model_fields.items():
        annotation = field.annotation
        is_list = False
        for _ in range(3):  # Optional[List[X]] → List[X] → X
            origin = typing.get_origin(annotation)
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if origin is list or origin is typing.List:  # noqa: UP006 - the models use typing.List
                is_list = True
                annotation = args[0] if args else None
            elif origin is typing.Union and len(args) == 1:
                annotation = args[0]
            else:
                break
        item_class = None
        getter = getattr(annotation, "get_model_klass", None)
        if callable(getter):
            try:
                item_class = getter()
            except (TypeError, AttributeError, ImportError):
                item_class = None
            if item_class is not None and item_class.__name__ == "Resource":
                item_class = None  # contained resources are looked up by their own resourceType
        shape[field.alias or name] = (is_list, item_class)
    return shape
