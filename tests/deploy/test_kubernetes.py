"""The Kubernetes manifests, validated offline against the Kubernetes API schemas bundled in the
kubernetes-validate package (strict: an unknown field is an error), and checked for what the schemas
cannot see: the kustomization lists every manifest and nothing missing, and the objects refer to
each other by the right names and labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import DEPLOY, run, tool

KUBERNETES = DEPLOY / "kubernetes"
# The oldest Kubernetes the manifests are meant for, and the newest the validator knows.
VERSIONS = ("1.29.0", "1.37.0")
NOT_APPLIED = {"kustomization.yaml", "secret.example.yaml"}  # the secret is created by hand


def manifests() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def objects() -> dict[tuple[str, str], dict]:
    found = {}
    for path in manifests():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def validation_errors(*paths: Path, version: str = VERSIONS[0]) -> str:
    """What the validator says is wrong, or "" when every object passed. An object whose kind has
    no schema (a misspelled kind) is only a warning to the validator, and an error here."""
    result = run(tool("kubernetes-validate"), "--strict", "--quiet", "--kubernetes-version", version, *paths)
    said = (result.stdout + result.stderr).strip()
    if result.returncode != 0 and not said:
        said = f"kubernetes-validate exited with {result.returncode}"
    return said


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_matches_the_kubernetes_schemas(version: str) -> None:
    paths = manifests()
    assert {p.name for p in paths} >= {"edge.yaml", "redis.yaml", "hpa.yaml", "pdb.yaml", "secret.example.yaml"}
    assert validation_errors(*paths, version=version) == ""


@pytest.mark.parametrize(("find", "replace", "error"), [
    ("replicas: 2", 'replicas: "two"', "not of type 'integer'"),
    ("replicas: 2", "replicas: 2\n  replica: 2", "'replica' was unexpected"),  # strict: unknown fields
    ("kind: Deployment", "kind: Deploymnet", "Couldn't find schema for kind Deploymnet"),
    ("- name: edge\n", "- nam: edge\n", "'name' is a required property"),
])
def test_an_invalid_manifest_fails(tmp_path: Path, find: str, replace: str, error: str) -> None:
    text = (KUBERNETES / "edge.yaml").read_text()
    assert find in text
    broken = tmp_path / "edge.yaml"
    broken.write_text(text.replace(find, replace, 1))
    assert error in validation_errors(broken)


def kustomization_problems(directory: Path) -> list[str]:
    listed = yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]
    problems = [f"{name}: listed but missing" for name in listed if not (directory / name).is_file()]
    problems += [f"{p.name}: not in the kustomization" for p in sorted(directory.glob("*.yaml"))
                 if p.name not in listed and p.name not in NOT_APPLIED]
    return problems


def test_the_kustomization_applies_every_manifest_and_nothing_missing(tmp_path: Path) -> None:
    assert kustomization_problems(KUBERNETES) == []
    for path in KUBERNETES.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "pdb.yaml").rename(tmp_path / "budget.yaml")
    assert kustomization_problems(tmp_path) == ["pdb.yaml: listed but missing", "budget.yaml: not in the kustomization"]


def test_the_objects_refer_to_each_other() -> None:
    found = objects()
    edge = found[("Deployment", "edge")]
    labels = edge["spec"]["template"]["metadata"]["labels"]
    container = edge["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"] for p in container["ports"]}
    assert edge["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in ("edge", "edge-pods"):
        assert found[("Service", service)]["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in found[("Service", service)]["spec"]["ports"]} <= ports
    assert found[("PodDisruptionBudget", "edge")]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = found[("HorizontalPodAutoscaler", "edge")]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "edge")
    assert ("Secret", container["envFrom"][0]["secretRef"]["name"]) in found
    assert {container["readinessProbe"]["httpGet"]["port"], container["livenessProbe"]["httpGet"]["port"]} <= ports
    redis = found[("StatefulSet", "edge-redis")]
    assert found[("Service", "edge-redis")]["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    volumes = {v["name"]: v for v in redis["spec"]["template"]["spec"]["volumes"]}
    assert ("ConfigMap", volumes["config"]["configMap"]["name"]) in found
    store = found[("Secret", "edge-credentials")]["stringData"]["EDGE_STORE"]
    assert store.startswith(f"redis://{redis['spec']['serviceName']}:6379/")


def test_redis_keeps_what_it_was_given() -> None:
    """As README "Running several nodes" asks: append-only persistence fsynced every second, on a
    volume of its own, and no eviction (a lease or a stream silently dropped would be worse than a
    refused write)."""
    found = objects()
    conf = dict(line.split(None, 1) for line in found[("ConfigMap", "edge-redis")]["data"]["redis.conf"].splitlines()
                if line.strip() and not line.startswith("#"))
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction" and conf["dir"] == "/data"
    redis = found[("StatefulSet", "edge-redis")]["spec"]
    claims = {c["metadata"]["name"] for c in redis["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in redis["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["data"] == "/data" and "data" in claims


def test_every_container_has_requests_and_limits() -> None:
    for (kind, name), doc in objects().items():
        if kind in ("Deployment", "StatefulSet"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                resources = container["resources"]
                assert {"cpu", "memory"} <= resources["requests"].keys(), (name, container["name"])
                assert "memory" in resources["limits"], (name, container["name"])
