"""deploy/k8s: the manifests parse and hold together (no cluster needed)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
APP_SERVICES = {"members": 8001, "alerts": 8002, "dispatch": 8003, "console": 8000}


def _docs(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


MANIFESTS = [d for p in sorted(K8S.glob("*.yaml")) for d in _docs(p)]
SECRET_TEMPLATE = _docs(K8S / "templates" / "secret.yaml")


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in MANIFESTS if d["kind"] == kind}


def test_everything_lives_in_the_muster_namespace():
    assert "muster" in _by_kind("Namespace")
    for doc in MANIFESTS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "muster", doc["metadata"]["name"]


def test_deployments_probe_readyz_and_healthz_and_request_resources():
    deployments = _by_kind("Deployment")
    assert set(deployments) == set(APP_SERVICES)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["ports"][0]["containerPort"] == APP_SERVICES[name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        refs = {next(iter(ref)): next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"configMapRef": "muster", "secretRef": "muster"}


def test_services_select_their_deployments():
    deployments = _by_kind("Deployment")
    for name, service in _by_kind("Service").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"][0]["port"] == APP_SERVICES[name]


def test_alerts_has_a_budget_and_an_autoscaler():
    pdb, hpa = (
        _by_kind("PodDisruptionBudget")["alerts"],
        _by_kind("HorizontalPodAutoscaler")["alerts"],
    )
    labels = _by_kind("Deployment")["alerts"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "alerts"
    assert "replicas" not in _by_kind("Deployment")["alerts"]["spec"]


def test_init_job_provisions_and_migrates_with_modules_that_exist():
    (container,) = _by_kind("Job")["muster-init"]["spec"]["template"]["spec"]["containers"]
    command = " ".join(container["command"])
    modules = re.findall(r"python -m ([\w.]+)", command)
    assert modules[0] == "shared.events.provision"
    # the console owns no data: it has nothing to migrate
    assert {f"services.{s}" for s in APP_SERVICES if s != "console"} <= set(modules)
    for module in modules:
        base = REPO / Path(*module.split("."))
        assert base.with_suffix(".py").is_file() or (base / "__main__.py").is_file(), module


def test_configmap_holds_no_secret_and_the_template_only_placeholders():
    config = _by_kind("ConfigMap")["muster"]["data"]
    assert not {"DATABASE_URL", "REDIS_URL", "TWILIO_AUTH_TOKEN"} & set(config)
    (secret,) = SECRET_TEMPLATE
    assert not any(d["kind"] == "Secret" for d in MANIFESTS), "a Secret would be applied"
    for key, value in secret["stringData"].items():
        assert "<" in value and ">" in value, f"{key} is not a placeholder"


def test_console_calls_the_in_cluster_apis_and_shares_its_session_key():
    config = _by_kind("ConfigMap")["muster"]["data"]
    services = _by_kind("Service")
    for name in ("members", "alerts", "dispatch"):
        port = services[name]["spec"]["ports"][0]["port"]
        assert config[f"CONSOLE_{name.upper()}_URL"] == f"http://{name}.muster.svc:{port}"
    assert config["CONSOLE_SECURE_COOKIES"] == "true"
    (secret,) = SECRET_TEMPLATE
    # several console pods: each must verify the cookies the others signed
    assert "CONSOLE_SESSION_SECRET" in secret["stringData"]
    assert "CONSOLE_SESSION_SECRET" not in config


def test_the_ingress_is_a_trusted_proxy_and_nothing_else_is():
    # issue 10, defect 4: behind the Ingress every client had the controller's address
    trusted = _by_kind("ConfigMap")["muster"]["data"]["MUSTER_FORWARDED_ALLOW_IPS"]
    networks = [ipaddress.ip_network(n.strip()) for n in trusted.split(",")]
    assert networks and all(n.is_private for n in networks)
    assert "*" not in trusted
