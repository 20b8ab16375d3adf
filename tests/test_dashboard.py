"""deploy/grafana/dvt-cds-dashboard.json reads only what the service exports: every metric a query names is one of
cds_service/metrics.py's series, every label it selects or groups by is one of that metric's labels, and the
issuer variable is built from the issuer label (a name from DVT_CDS_TRUSTED_ISSUERS, never patient data)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from cds_service import metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "dvt-cds-dashboard.json").read_text())
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Each series name the service exports (histogram parts, counter totals) with its labels."""
    series: dict[str, set[str]] = {}
    collectors = [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]
    for collector in collectors:
        for family in collector.collect():
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
        labels = set(collector._labelnames)  # a counter never incremented still has its labels
        name = collector._name
        kind = collector._type
        for suffix in SUFFIXES.get(kind, ("",)):
            full = name + suffix if not name.endswith(suffix) else name
            series.setdefault(full, set()).update(labels | ({"le"} if suffix == "_bucket" else set()))
    return series


def panels() -> list[dict[str, Any]]:
    return [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    found = [t["expr"] for p in panels() for t in p["targets"]]
    found += [v["query"] for v in DASHBOARD["templating"]["list"] if v["type"] == "query"]
    return found


def test_every_series_and_label_a_query_reads_is_exported() -> None:
    series = exported()
    assert "dvt_cds_request_duration_seconds_bucket" in series
    for expr in expressions():
        names = set(re.findall(r"\bdvt_cds_[a-z_]+", expr))
        assert names, expr
        for name in names:
            assert name in series, (name, expr)
        labels = set(re.findall(r"(\w+)\s*=~?\s*\"", expr))
        for group in re.findall(r"by \(([^)]*)\)", expr) + re.findall(r"label_values\([^,]+,\s*(\w+)\)", expr):
            labels |= {label.strip() for label in group.split(",")}
        allowed = set().union(*(series[name] for name in names))
        assert labels <= allowed, (labels - allowed, expr)


def test_every_exported_family_has_a_panel() -> None:
    read = " ".join(expressions())
    for name in ("dvt_cds_request_duration_seconds", "dvt_cds_cards_total", "dvt_cds_fhir_fetches_total",
                 "dvt_cds_fhir_batches_total", "dvt_cds_jwt_rejections_total", "dvt_cds_shed_total"):  # fmt: skip
        assert name in read, name


def test_the_dashboard_is_importable() -> None:
    assert DASHBOARD["uid"] == "dvt-cds"
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert all(target["refId"] and target["expr"] for target in panel["targets"])
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["issuer"]["query"] == "label_values(dvt_cds_request_duration_seconds_count, issuer)"
    assert all('issuer=~"$issuer' in t["expr"] for p in panels() for t in p["targets"] if "issuer" in t["expr"])


def test_a_new_metric_gets_a_panel() -> None:
    """A metric added to metrics.py is a decision about the dashboard too: this names the ones it does not show."""
    ours = {m.name for m in REGISTRY.collect() if m.name.startswith("dvt_cds_")}
    shown = {
        re.sub(r"_(bucket|count|sum|total)$", "", n) for n in re.findall(r"\bdvt_cds_[a-z_]+", " ".join(expressions()))
    }
    assert ours <= shown, ours - shown
