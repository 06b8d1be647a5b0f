"""The Kubernetes deployment (deploy/k8s), checked offline: the kustomizations build (tests/deploy/kustomize.py),
every built-in resource validates against the Kubernetes schemas that kubernetes-validate ships (no
network), and the parts agree with each other and with what the tests run: the commands are the
compose stack's, Services reach their pods, the worker drains within its grace period on a GPU, Redis
persists every write, Prometheus scrapes the pods under the job names the dashboard and alerts use,
and the autoscalers target the worker on the real stream names and the recorded metric.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from eqr.server.broker.redis_protocol import Keys
from tests.deploy.kustomize import build, files_used
from tests.requires import os_command

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
PROMETHEUS = ROOT / "deploy/prometheus"
KUBERNETES_VERSION = "1.30"  # the oldest release still maintained upstream when this was written
STACK = build(K8S)
KEDA = build(K8S / "autoscaling/keda")
HPA = build(K8S / "autoscaling/hpa")
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
HAND_BACK_S = 10  # after the drain: settle the cancelled jobs (5 s), flush results, hand entries back


def one(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [c] = workload["spec"]["template"]["spec"]["containers"]
    return c


def env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}


def test_every_manifest_is_part_of_a_kustomization():
    used = files_used(K8S) | files_used(K8S / "autoscaling/keda") | files_used(K8S / "autoscaling/hpa")
    present = {p.resolve() for p in K8S.rglob("*.yaml")}
    assert present <= used, f"never built: {sorted(str(p) for p in present - used)}"


@pytest.mark.parametrize(
    "resource",
    [r for r in STACK + HPA if r["apiVersion"] != "keda.sh/v1alpha1"],
    ids=lambda r: f"{r['kind']}/{r['metadata']['name']}",
)
def test_resource_validates_against_the_kubernetes_schema(resource: dict[str, Any]):
    """Strict: an unknown field (a typo) fails, as well as a wrong type or a missing required field."""
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_validator_catches_a_typo():
    worker = one(STACK, "Deployment", "eqr-worker")
    broken = yaml.safe_load(yaml.safe_dump(worker))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 45  # for terminationGracePeriodSeconds
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_everything_runs_in_one_namespace():
    [namespace] = [r["metadata"]["name"] for r in STACK if r["kind"] == "Namespace"]
    others = [r for r in STACK + KEDA + HPA if r["kind"] != "Namespace"]
    assert {r["metadata"]["namespace"] for r in others} == {namespace}


def test_api_and_worker_run_the_compose_commands():
    """The compose commands are the ones tests/e2e runs (test_deploy.py), so these are too."""
    for name, service in (("eqr-api", "api"), ("eqr-worker", "worker")):
        c = container(one(STACK, "Deployment", name))
        assert c["command"] == COMPOSE[service]["command"], name
        assert c["image"] == "eqr-serve:latest"


def test_services_reach_their_pods_on_named_ports():
    workloads = [r for r in STACK if r["kind"] in ("Deployment", "StatefulSet")]
    for service in (r for r in STACK if r["kind"] == "Service"):
        selector = service["spec"]["selector"]
        [pod] = [w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        ports = {p["name"] for p in container(pod)["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, service["metadata"]["name"]


def test_the_worker_gets_a_gpu_and_drains_within_its_grace_period():
    worker = one(STACK, "Deployment", "eqr-worker")
    c = container(worker)
    assert env(c)["EQR_DEVICE"] == "cuda"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == 1
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= float(env(c)["EQR_DRAIN_TIMEOUT_S"]) + HAND_BACK_S
    port = c["command"][c["command"].index("--metrics-port") + 1]
    [metrics] = [p for p in c["ports"] if p["name"] == "metrics"]
    assert str(metrics["containerPort"]) == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] == "metrics" and c[probe]["httpGet"]["path"] in ("/healthz", "/readyz")


def test_the_api_probes_its_readiness_and_drains():
    api = one(STACK, "Deployment", "eqr-api")
    c = container(api)
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > float(env(c)["EQR_DRAIN_TIMEOUT_S"])


def test_redis_persists_every_write_on_a_volume():
    redis = one(STACK, "StatefulSet", "redis")
    args = container(redis)["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--appendfsync") + 1] == "always"
    [claim] = redis["spec"]["volumeClaimTemplates"]
    [mount] = [m for m in container(redis)["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert args[args.index("--dir") + 1] == mount["mountPath"]
    service = one(STACK, "Service", "redis")
    assert "redis://redis:6379/0" in container(one(STACK, "Deployment", "eqr-worker"))["command"]
    assert service["spec"]["ports"][0]["port"] == 6379


def _scrape_config() -> dict[str, Any]:
    config_map = one(STACK, "ConfigMap", "eqr-prometheus")
    return yaml.safe_load(config_map["data"]["prometheus.yml"])


def test_prometheus_loads_its_config_and_every_rule_file():
    prometheus = one(STACK, "Deployment", "prometheus")
    c = container(prometheus)
    [config_arg] = [a for a in c["args"] if a.startswith("--config.file=")]
    config_path = Path(config_arg.split("=", 1)[1])
    [mount] = [m for m in c["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
    [volume] = [v for v in prometheus["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    config_map = one(STACK, "ConfigMap", volume["configMap"]["name"])
    assert config_path.name in config_map["data"]
    assert set(_scrape_config()["rule_files"]) | {config_path.name} == set(config_map["data"])
    # the same rules as the compose stack's Prometheus
    assert _scrape_config()["rule_files"] == yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["rule_files"]


def test_prometheus_config_passes_promtool(tmp_path: Path):
    """Debian's Prometheus is built without Kubernetes discovery, so promtool checks the config with
    static targets in its place; the rest (relabelling, rule files) is checked as written."""
    config = _scrape_config()
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["pod:9100"]}]
    for name in config["rule_files"]:
        (tmp_path / name).write_text(one(STACK, "ConfigMap", "eqr-prometheus")["data"][name])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [os_command("promtool", "prometheus"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_prometheus_scrapes_the_pods_under_the_dashboard_job_names():
    """Each job keeps exactly the pods and port its relabelling names, by the labels the manifests give."""
    compose = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    jobs = {j["job_name"]: j for j in _scrape_config()["scrape_configs"]}
    assert set(jobs) == {j["job_name"] for j in compose}
    for job_name, deployment in (("eqr-api", "eqr-api"), ("eqr-worker", "eqr-worker")):
        workload = one(STACK, "Deployment", deployment)
        meta = {
            f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
            for k, v in workload["spec"]["template"]["metadata"]["labels"].items()
        }
        ports = [p["name"] for p in container(workload)["ports"]]
        for other, scrape in jobs.items():
            port_label = "__meta_kubernetes_pod_container_port_name"
            kept = [p for p in ports if _kept(scrape["relabel_configs"], {**meta, port_label: p})]
            assert kept == (ports if other == job_name else []), (other, deployment)
        assert jobs[job_name]["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"own_namespace": True}}]


def _kept(relabel_configs: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    """Prometheus's ``keep`` relabelling (the only action used here besides copying a label)."""
    for rule in relabel_configs:
        if rule.get("action") == "keep":
            value = ";".join(labels.get(name, "") for name in rule["source_labels"])
            if not re.fullmatch(rule["regex"], value):
                return False
    return True


def _served_models() -> list[str]:
    """The model names the image's workers serve: the folders of the Dockerfile's EQR_MODEL."""
    [folders] = re.findall(r"EQR_MODEL=(\S+)", (ROOT / "Dockerfile").read_text())
    return [Path(folder).name for folder in folders.split(",")]


def test_keda_scales_the_worker_on_every_served_models_stream():
    [scaled] = KEDA
    assert scaled["kind"] == "ScaledObject" and scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    one(STACK, "Deployment", spec["scaleTargetRef"]["name"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    redis = one(STACK, "Service", "redis")
    address = f"redis.{redis['metadata']['namespace']}.svc.cluster.local:{redis['spec']['ports'][0]['port']}"
    triggers = spec["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    assert all(t["metadata"]["address"] == address and int(t["metadata"]["streamLength"]) > 0 for t in triggers)
    assert sorted(t["metadata"]["stream"] for t in triggers) == sorted(Keys("eqr").jobs(m) for m in _served_models())


def test_the_hpa_scales_the_worker_on_the_recorded_unfinished_jobs():
    [hpa] = HPA
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "eqr-worker"}
    [metric] = hpa["spec"]["metrics"]
    groups = yaml.safe_load((PROMETHEUS / "autoscaling.yml").read_text())["groups"]
    recorded = [r["record"] for g in groups for r in g["rules"]]
    # prometheus-adapter serves a recorded series under its name with ':' made '_' (docs/deployment/kubernetes.md)
    assert metric["external"]["metric"]["name"] in {name.replace(":", "_") for name in recorded}
    keda_trigger = one(KEDA, "ScaledObject", "eqr-worker")["spec"]["triggers"][0]
    assert metric["external"]["target"]["averageValue"] == keda_trigger["metadata"]["streamLength"]  # one rule
