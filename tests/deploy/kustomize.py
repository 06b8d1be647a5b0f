"""Enough of ``kustomize build`` to build deploy/k8s offline, without the kustomize binary.

It resolves ``resources`` (files and folders with their own kustomization), ``configMapGenerator``
(files, ``key=path``), ``labels`` (on metadata only, as kustomize does without ``includeSelectors``),
``images`` (``newName``/``newTag``) and ``namespace``. Any other field is refused, so a
kustomization that grows a feature this resolver does not know fails the tests instead of being
half-built. Unlike kustomize, a generated ConfigMap keeps its name (no content hash suffix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "namespace", "resources", "labels", "images", "configMapGenerator"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def build(folder: Path) -> list[dict[str, Any]]:
    """The resources of the kustomization in ``folder``, as kustomize would emit them (but for hashes)."""
    return _build(folder, seen=set())


def files_used(folder: Path) -> set[Path]:
    """Every file the kustomization in ``folder`` reads, its own kustomization.yaml included."""
    used: set[Path] = set()
    _build(folder, seen=used)
    return used


def _build(folder: Path, seen: set[Path]) -> list[dict[str, Any]]:
    path = folder / "kustomization.yaml"
    seen.add(path.resolve())
    k = yaml.safe_load(path.read_text())
    unknown = set(k) - KNOWN
    assert not unknown, f"{path}: fields this offline build does not resolve: {sorted(unknown)}"
    assert k["kind"] == "Kustomization", path
    out: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        target = (folder / entry).resolve()
        if target.is_dir():
            out += _build(target, seen)
        else:
            seen.add(target)
            out += [doc for doc in yaml.safe_load_all(target.read_text()) if doc]
    for generator in k.get("configMapGenerator", []):
        data = {}
        for spec in generator["files"]:
            key, _, source = spec.rpartition("=") if "=" in spec else (Path(spec).name, "", spec)
            file = (folder / source).resolve()
            assert file.is_relative_to(folder.resolve()), f"{path}: {spec} is outside the kustomization's folder"
            seen.add(file)
            data[key] = file.read_text()
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    for labels in k.get("labels", []):
        assert not labels.get("includeSelectors") and not labels.get("includeTemplates"), path
        for r in out:
            r["metadata"].setdefault("labels", {}).update(labels["pairs"])
    for image in k.get("images", []):
        for container in _containers(out):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    if "namespace" in k:
        for r in out:
            if r["kind"] not in CLUSTER_SCOPED:
                r["metadata"]["namespace"] = k["namespace"]
            for subject in r.get("subjects", []):
                if subject["kind"] == "ServiceAccount":
                    subject["namespace"] = k["namespace"]
    return out


def _containers(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pods = [r["spec"]["template"]["spec"] for r in resources if "template" in r.get("spec", {})]
    return [c for pod in pods for c in [*pod.get("initContainers", []), *pod["containers"]]]
