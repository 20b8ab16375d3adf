"""A small stand-in for `kubectl kustomize` (there is no kubectl here): the parts of kustomize that
deploy/kubernetes uses, and nothing else — ``resources`` (files and directories), ``namespace``, ``images``
(newName, newTag, digest), ``secretGenerator`` (``files``, named with a content hash, the references to it in pod
templates renamed) and ``patches`` (JSON 6902 operations on a kind/name target). A kustomization.yaml using any
other field is refused, so this cannot silently skip something kubectl would apply.

    python -m tests.kustomize deploy/kubernetes/overlays/production     # the rendered manifests, as YAML

The hash suffix is computed the way kustomize describes it (sha256 of the Secret's JSON, ten characters) but is
not promised to be byte-identical with kustomize's: only its role (a new name when the content changes, so a
rollout follows) matters here.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "secretGenerator", "patches"}
Doc = dict[str, Any]


class KustomizeError(ValueError):
    pass


def build(directory: Path) -> list[Doc]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: kustomization fields this stand-in does not implement: {sorted(unknown)}")
    docs: list[Doc] = []
    for resource in spec.get("resources", []):
        path = directory / resource
        docs += build(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    renames = {}
    for generator in spec.get("secretGenerator", []):
        secret = _secret(directory, generator)
        renames[generator["name"]] = secret["metadata"]["name"]
        docs.append(secret)
    for patch in spec.get("patches", []):
        _patch(docs, patch)
    for doc in docs:
        if "namespace" in spec:
            doc["metadata"]["namespace"] = spec["namespace"]
        for pod in _pod_specs(doc):
            _rename_secrets(pod, renames)
            for container in pod.get("initContainers", []) + pod.get("containers", []):
                container["image"] = _image(container["image"], spec.get("images", []))
    return docs


def _secret(directory: Path, generator: Doc) -> Doc:
    if set(generator) - {"name", "files"}:
        raise KustomizeError(f"secretGenerator fields not implemented: {sorted(set(generator) - {'name', 'files'})}")
    data = {}
    for entry in generator["files"]:
        key, _, source = entry.partition("=")
        path = directory / (source or key)
        if not path.is_file():
            raise KustomizeError(f"secretGenerator {generator['name']}: {path} does not exist")
        data[key if source else Path(key).name] = base64.b64encode(path.read_bytes()).decode()
    name = generator["name"]
    encoded = json.dumps({"data": data, "kind": "Secret", "name": name, "type": "Opaque"}, sort_keys=True)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    suffix = digest.translate(str.maketrans("013ae", "ghkmt"))  # kustomize avoids vowels and look-alike digits
    metadata = {"name": f"{name}-{suffix}"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "Opaque", "data": data}


def _patch(docs: list[Doc], patch: Doc) -> None:
    target = patch["target"]
    if set(target) - {"kind", "name"} or set(patch) - {"target", "patch"}:
        raise KustomizeError(f"patch form not implemented: {patch}")
    matches = [d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
    if len(matches) != 1:
        raise KustomizeError(f"patch target {target} matches {len(matches)} resources")
    for operation in yaml.safe_load(patch["patch"]):
        _apply(matches[0], operation)


def _apply(doc: Doc, operation: Doc) -> None:
    """One JSON Patch (RFC 6902) operation: add, remove, replace."""
    op, path = operation["op"], operation["path"]
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    parent: Any = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, operation["value"])
        elif op in ("replace", "remove"):
            if not -len(parent) <= index < len(parent):
                raise KustomizeError(f"{op} {path}: no such item")
            if op == "replace":
                parent[index] = operation["value"]
            else:
                del parent[index]
        else:
            raise KustomizeError(f"JSON patch op not implemented: {op}")
        return
    if op in ("replace", "remove") and last not in parent:
        raise KustomizeError(f"{op} {path}: no such field")
    if op in ("add", "replace"):
        parent[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del parent[last]
    else:
        raise KustomizeError(f"JSON patch op not implemented: {op}")


def _pod_specs(doc: Doc) -> Iterator[Doc]:
    if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        yield doc["spec"]["template"]["spec"]
    elif doc["kind"] == "CronJob":
        yield doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _rename_secrets(pod: Doc, renames: dict[str, str]) -> None:
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            volume["secret"]["secretName"] = renames.get(volume["secret"]["secretName"], volume["secret"]["secretName"])
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                source["secretRef"]["name"] = renames.get(source["secretRef"]["name"], source["secretRef"]["name"])
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                ref["name"] = renames.get(ref["name"], ref["name"])


def _image(image: str, rules: list[Doc]) -> str:
    name = image.split("@")[0]
    name = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    for rule in rules:
        if rule["name"] == name:
            new = rule.get("newName", name)
            if "digest" in rule:
                return f"{new}@{rule['digest']}"
            tag = rule.get("newTag", image[len(name) + 1 :] if image.startswith(name + ":") else "")
            return f"{new}:{tag}" if tag else new
    return image


def main(argv: list[str]) -> int:
    docs = build(Path(argv[0]))
    print(yaml.safe_dump_all(docs, sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
