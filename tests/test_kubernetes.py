"""deploy/kubernetes: each overlay rendered (tests/kustomize.py, for want of kubectl here) and every manifest
validated against the pinned Kubernetes version's schemas (kubernetes-validate, strict: no unknown fields); the
ServiceMonitor, a Prometheus Operator custom resource, against a schema of the fields it uses. Then what the
schemas cannot tell: the settings are real settings, the probes and ports are the service's, the pods run as the
image's numeric user on a read-only root, the grace period covers the drain, the Jobs run real commands."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from cds_service.cli import build_parser
from cds_service.fhir.conceptmaps import SiteConceptMaps
from cds_service.front.supervisor import _STOP_S
from cds_service.profiles import OrderCatalog
from cds_service.settings import Settings, unknown_variables
from tests.kustomize import build

KUBERNETES_VERSION = "1.33.0"  # the oldest minor version the manifests promise to apply on
ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())
GUNICORN_GRACEFUL_S = 20  # cds_service/gunicorn_conf.py graceful_timeout

SERVICE_MONITOR = {  # the fields of monitoring.coreos.com/v1 ServiceMonitor used here, closed to anything else
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}


def render(overlay: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The overlay as `kubectl apply -k` would send it, with its example secret files in place of the site's."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBE, copy, ignore=shutil.ignore_patterns("site"))
    shutil.copytree(copy / "overlays" / overlay / "site.example", copy / "overlays" / overlay / "site")
    return build(copy / "overlays" / overlay)


@pytest.fixture(params=OVERLAYS)
def manifests(request: pytest.FixtureRequest, tmp_path: Path) -> list[dict[str, Any]]:
    return render(request.param, tmp_path)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        "Deployment": one(docs, "Deployment")["spec"]["template"]["spec"],
        "Job": one(docs, "Job")["spec"]["template"]["spec"],
        "CronJob": one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    }


def test_there_is_a_base_and_overlays() -> None:
    assert (KUBE / "base" / "kustomization.yaml").exists()
    assert {"staging", "production"} <= set(OVERLAYS)


def test_every_manifest_is_valid_for_the_pinned_kubernetes_version(manifests: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in manifests)
    assert kinds == sorted(
        [
            "ConfigMap", "CronJob", "Deployment", "HorizontalPodAutoscaler", "Ingress", "Job", "NetworkPolicy",
            "PodDisruptionBudget", "Secret", "Service", "ServiceAccount", "ServiceMonitor",
        ]
    )  # fmt: skip
    for doc in manifests:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            jsonschema.validate(doc, SERVICE_MONITOR)
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_manifest_with_an_unknown_field_is_caught(tmp_path: Path) -> None:
    """The validation is strict: a typo in a field name fails, it is not ignored."""
    deployment = one(render("staging", tmp_path), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_configmap_holds_real_settings_that_validate(manifests: list[dict[str, Any]], tmp_path: Path) -> None:
    data = one(manifests, "ConfigMap")["data"]
    assert unknown_variables(data) == []
    site = tmp_path / "site"
    secret = one(manifests, "Secret")
    site.mkdir()
    for key, value in secret["data"].items():
        (site / key).write_bytes(base64.b64decode(value))
    local = {k: v.replace("/etc/dvt-cds/site", str(site)) for k, v in data.items()}
    values = {k.removeprefix("DVT_CDS_").lower(): v for k, v in local.items() if not k.endswith("_FILE")}
    files = {
        k.removeprefix("DVT_CDS_").removesuffix("_FILE").lower(): Path(v)
        for k, v in local.items()
        if k.endswith("_FILE")
    }
    for name, path in files.items():
        values[name] = path.read_text().rstrip("\r\n")  # as DVT_CDS_*_FILE reads it
    settings = Settings(**values)
    assert settings.auth == "jwt"
    assert settings.metrics_port == 9464
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.trusted_issuers  # an overlay names its EHRs (the base's empty list rejects every call)
    SiteConceptMaps.load(settings.concept_maps)  # the example site files are valid site files
    OrderCatalog.load(settings.order_catalog)
    # Mounted files, never values in the ConfigMap: the database URL (with its password) and the session key.
    assert "DVT_CDS_DATABASE_URL" not in data
    assert "DVT_CDS_SMART_SESSION_KEY" not in data


def test_pods_run_as_the_images_numeric_user_on_a_read_only_root(manifests: list[dict[str, Any]]) -> None:
    uid = int(re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), flags=re.M).group(1))
    for kind, pod in pod_specs(manifests).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, kind
        assert pod["securityContext"]["runAsUser"] == uid, kind
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, kind
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts["/tmp"] == "tmp"  # noqa: S108 - the front's runtime directory (tempfile.mkdtemp)
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes["tmp"]


def test_writable_paths_are_volumes(manifests: list[dict[str, Any]]) -> None:
    data = one(manifests, "ConfigMap")["data"]
    pod = pod_specs(manifests)["Deployment"]
    [container] = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in (data["DVT_CDS_METRICS_DIR"], str(Path(data["DVT_CDS_OUTBOX_PATH"]).parent)):
        assert path in mounts, path
        assert "emptyDir" in volumes[mounts[path]]
    assert volumes["metrics"]["emptyDir"]["medium"] == "Memory"
    site = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/dvt-cds/site")
    assert site["readOnly"] is True
    secret = one(manifests, "Secret")["metadata"]["name"]
    assert volumes[site["name"]]["secret"]["secretName"] == secret  # the generated (hash-suffixed) name


def test_probes_ports_and_service_are_the_services(manifests: list[dict[str, Any]]) -> None:
    data = one(manifests, "ConfigMap")["data"]
    [container] = pod_specs(manifests)["Deployment"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(data["DVT_CDS_PORT"]), "metrics": int(data["DVT_CDS_METRICS_PORT"])}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # the supervisor's boot allowance
    service = one(manifests, "Service")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"http": "http", "metrics": "metrics"}
    labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    ingress = one(manifests, "Ingress")
    [path] = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"]["service"] == {"name": "dvt-cds", "port": {"name": "http"}}  # never the metrics port
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    base = data["DVT_CDS_PUBLIC_BASE_URL"]
    assert base == f"https://{ingress['spec']['rules'][0]['host']}"  # JWT aud is compared with it


def test_ingress_limits_match_the_service(manifests: list[dict[str, Any]]) -> None:
    notes = one(manifests, "Ingress")["metadata"]["annotations"]
    size = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(size.removesuffix("m")) * 1024 * 1024 >= Settings(auth="off").max_body_bytes
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > Settings(auth="off").call_deadline_s
    assert notes["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"


def test_the_grace_period_covers_prestop_drain_and_shutdown(manifests: list[dict[str, Any]]) -> None:
    data = one(manifests, "ConfigMap")["data"]
    pod = pod_specs(manifests)["Deployment"]
    [container] = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # nginx finishes what it holds (bounded by gunicorn answering) then gunicorn its calls: at most _STOP_S each.
    needed = int(pre_stop[1]) + float(data["DVT_CDS_DRAIN_S"]) + GUNICORN_GRACEFUL_S + 5
    assert float(data["DVT_CDS_DRAIN_S"]) > 0
    assert (
        needed
        <= pod["terminationGracePeriodSeconds"]
        <= int(pre_stop[1]) + float(data["DVT_CDS_DRAIN_S"]) + 2 * _STOP_S
    )


def test_rollouts_keep_capacity_and_disruptions_are_bounded(manifests: list[dict[str, Any]]) -> None:
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "dvt-cds"}
    assert 2 <= hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    allowed = pdb["spec"].get("maxUnavailable", hpa["spec"]["minReplicas"] - pdb["spec"].get("minAvailable", 0))
    assert 1 <= allowed < hpa["spec"]["minReplicas"]


def test_egress_is_dns_the_database_and_https_or_the_proxy_only(manifests: list[dict[str, Any]]) -> None:
    policy = one(manifests, "NetworkPolicy")["spec"]
    data = one(manifests, "ConfigMap")["data"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "dvt-cds"}  # the Jobs' pods too
    dns, database, web = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert [p["port"] for p in database["ports"]] == [5432]
    proxy = data.get("DVT_CDS_HTTPS_PROXY")
    expected = int(proxy.rsplit(":", 1)[1]) if proxy else 443
    assert [p["port"] for p in web["ports"]] == [expected]
    for rule in (database, web):
        assert all("ipBlock" in peer and peer["ipBlock"]["cidr"] != "0.0.0.0/0" for peer in rule["to"])
    ingress_ports = sorted(p["port"] for rule in policy["ingress"] for p in rule["ports"])
    assert ingress_ports == ["http", "metrics"]


def test_the_jobs_run_real_commands_on_the_same_image(manifests: list[dict[str, Any]]) -> None:
    parser = build_parser()
    specs = pod_specs(manifests)
    images = {kind: [c["image"] for c in pod["containers"]] for kind, pod in specs.items()}
    assert len({image for found in images.values() for image in found}) == 1
    [migrate] = specs["Job"]["containers"]
    [purge] = specs["CronJob"]["containers"]
    assert vars(parser.parse_args(migrate["command"][1:]))["db_command"] == "upgrade"
    assert vars(parser.parse_args(purge["command"][1:]))["db_command"] == "purge"
    assert specs["Job"]["restartPolicy"] == "Never"
    cron = one(manifests, "CronJob")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert one(manifests, "Job")["spec"]["ttlSecondsAfterFinished"] > 0  # re-applying recreates it


def test_the_commands_in_the_operations_guide_exist() -> None:
    parser = build_parser()
    text = (ROOT / "docs" / "operations.md").read_text()
    commands = re.findall(r"`dvt-cds ((?:db|serve|feedback-report)[^`]*)`", text)
    assert commands
    for command in commands:
        parser.parse_args([w for w in command.split() if w not in ("…",)])
    assert f"Kubernetes {KUBERNETES_VERSION.rsplit('.', 1)[0]}" in text


def test_the_generated_secret_changes_name_with_its_content(tmp_path: Path) -> None:
    first = one(render("production", tmp_path / "a"), "Secret")["metadata"]["name"]
    copy = tmp_path / "b"
    shutil.copytree(KUBE, copy / "kubernetes", ignore=shutil.ignore_patterns("site"))
    site = copy / "kubernetes" / "overlays" / "production" / "site"
    shutil.copytree(site.with_name("site.example"), site)
    (site / "database-url").write_text("postgresql+psycopg://other@db/dvtcds\n")
    second = one(build(site.parent), "Secret")["metadata"]["name"]
    assert first.startswith("dvt-cds-site-")
    assert second != first  # a new name: the Deployment's template changes, so pods roll
