"""deploy/kubernetes/, checked without a cluster: every object against Kubernetes' OpenAPI schemas
(kubernetes-validate, strict: unknown fields are errors), our containers given only variables the
service reads, probes that keep the API in service while the GPUs are down, one GPU per worker."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.support.deploy import kubernetes_documents, kubernetes_environments, unread_variables

KUBERNETES_VERSION = kubernetes_validate.latest_version()


@pytest.fixture(scope="module")
def documents() -> list[tuple[Path, dict[str, Any]]]:
    return kubernetes_documents()


def by_name(documents: list[tuple[Path, dict[str, Any]]]) -> dict[tuple[str, str], Any]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in documents}


def only_container(workload: dict[str, Any]) -> dict[str, Any]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


def test_every_object_follows_the_kubernetes_schemas(
    documents: list[tuple[Path, dict[str, Any]]],
) -> None:
    problems = []
    for path, doc in documents:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{path.name} {doc['kind']} {doc['metadata']['name']}: {err}")
    assert problems == []
    # Strict validation refuses what the API server would drop: a misspelt field.
    deployment = copy.deepcopy(by_name(documents)[("Deployment", "comfy-api")])
    only_container(deployment)["readinessProbe"]["periodSecond"] = 10
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_our_containers_get_only_variables_the_service_reads(
    documents: list[tuple[Path, dict[str, Any]]],
) -> None:
    environments = list(kubernetes_environments([doc for _, doc in documents]))
    assert unread_variables(environments) == {}
    assert len(environments) == 4  # API, control worker, GPU worker, setup


def test_the_api_stays_in_service_while_no_gpu_worker_polls(
    documents: list[tuple[Path, dict[str, Any]]],
) -> None:
    objects = by_name(documents)
    api = objects[("Deployment", "comfy-api")]
    container = only_container(api)
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready/api"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["args"][:3] == ["api", "--host", "0.0.0.0"]
    assert {e["name"] for e in container["env"]} >= {"COMFY_API_KEYS", "COMFY_URL_SIGNING_KEY"}
    service = objects[("Service", "comfy-api")]
    assert service["spec"]["selector"] == api["spec"]["template"]["metadata"]["labels"]


def test_each_gpu_worker_pod_has_one_gpu_and_a_stable_name(
    documents: list[tuple[Path, dict[str, Any]]],
) -> None:
    workers = by_name(documents)[("StatefulSet", "comfy-gpu-worker")]
    container = only_container(workers)
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    [name] = [e for e in container["env"] if e["name"] == "COMFY_WORKER_NAME"]
    assert name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_every_secret_and_config_map_a_pod_reads_is_defined(
    documents: list[tuple[Path, dict[str, Any]]],
) -> None:
    objects = by_name(documents)
    for _, doc in documents:
        pod = doc["spec"]["template"]["spec"] if "template" in doc.get("spec", {}) else None
        if pod is None:
            continue
        for container in pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in objects[("Secret", ref["name"])]["stringData"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in objects
