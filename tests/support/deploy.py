"""The deploy files as data, for checks that need no Docker engine and no cluster: the compose
file and the Kubernetes manifests parsed, the environment each of our containers gets, and every
environment variable the service reads (its settings classes, temporalio.envconfig, the AWS SDK)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.configprovider
import botocore.credentials
import yaml

import activities.workers.settings
import api.settings
from activities.workers.settings import ProcessSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
COMPOSE_FILE = DEPLOY_DIR / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = DEPLOY_DIR / ".env.example"
KUBERNETES_DIR = DEPLOY_DIR / "kubernetes"
DOCKERFILES = (DEPLOY_DIR / "Dockerfile", DEPLOY_DIR / "Dockerfile.gpu")
# The images built from our Dockerfiles: the containers whose environment we answer for.
OUR_IMAGES = ("comfy-temporal:", "comfy-temporal-gpu:")

# What temporalio.envconfig reads when a client connects (activities/workers/temporal_client.py):
# the names of its environment loader, which the SDK's Rust core implements.
TEMPORAL_ENVCONFIG = frozenset(
    {
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_API_KEY",
        "TEMPORAL_TLS",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_CERT_DATA",
        "TEMPORAL_TLS_CLIENT_KEY_PATH",
        "TEMPORAL_TLS_CLIENT_KEY_DATA",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
        "TEMPORAL_TLS_SERVER_NAME",
        "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
        "TEMPORAL_CODEC_ENDPOINT",
        "TEMPORAL_CODEC_AUTH",
        "TEMPORAL_PROFILE",
        "TEMPORAL_CONFIG_FILE",
    }
)
# Name patterns read as families: gRPC headers (TEMPORAL_GRPC_META_<NAME>) and per-service
# endpoints of the AWS SDK (AWS_ENDPOINT_URL_S3 ...).
STANDARD_PATTERNS = (
    re.compile(r"TEMPORAL_GRPC_META_[A-Z0-9_]+"),
    re.compile(r"AWS_ENDPOINT_URL_\w+"),
)


def settings_environment_names() -> frozenset[str]:
    """The variables of every settings class of the service: each field's alias."""
    # Both modules are imported above so that every process's class is defined.
    assert api.settings and activities.workers.settings
    names: set[str] = set()
    pending: list[type[ProcessSettings]] = [ProcessSettings]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        names.update(f.alias for f in cls.model_fields.values() if f.alias)
    return frozenset(names)


def aws_environment_names() -> frozenset[str]:
    """What the AWS SDK (botocore, under boto3) reads: its session variables and credentials; and
    AWS_REGION, which activities/io/s3_store.py reads where botocore does not."""
    names = {"AWS_ENDPOINT_URL", "AWS_REGION"}
    for spec in botocore.configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES.values():
        env = spec[1]
        names.update([env] if isinstance(env, str) else env or ())
    env_provider = botocore.credentials.EnvProvider
    names.update([env_provider.ACCESS_KEY, env_provider.SECRET_KEY, *env_provider.TOKENS])
    web_identity = botocore.credentials.AssumeRoleWithWebIdentityProvider
    names.update(web_identity._CONFIG_TO_ENV_VAR.values())
    container = botocore.credentials.ContainerProvider
    names.update([container.ENV_VAR, container.ENV_VAR_FULL, container.ENV_VAR_AUTH_TOKEN])
    return frozenset(names)


def service_reads(name: str) -> bool:
    """Whether a process of the service reads the variable `name`."""
    known = settings_environment_names() | TEMPORAL_ENVCONFIG | aws_environment_names()
    return name in known or any(p.fullmatch(name) for p in STANDARD_PATTERNS)


@dataclass(frozen=True)
class ContainerEnv:
    """The variables one container of ours is given, and where."""

    where: str
    names: frozenset[str]


def unread_variables(environments: Iterable[ContainerEnv]) -> dict[str, list[str]]:
    """Where a container is given variables no process of the service reads: where -> names."""
    unread = {
        env.where: sorted(n for n in env.names if not service_reads(n)) for env in environments
    }
    return {where: names for where, names in unread.items() if names}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def is_ours(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith(OUR_IMAGES)


def compose_environments(compose: dict[str, Any]) -> Iterator[ContainerEnv]:
    for name, service in compose["services"].items():
        if not is_ours(service):
            continue
        assert "env_file" not in service, f"{name}: env_file would pass every variable of the file"
        env = service.get("environment") or {}
        names = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        yield ContainerEnv(f"compose service {name}", frozenset(names))


def compose_interpolated_variables() -> dict[str, bool]:
    """The ${VAR} the compose file takes from deploy/.env: name -> whether it has a default."""
    found: dict[str, bool] = {}
    text = COMPOSE_FILE.read_text().replace("$$", "")
    for match in re.finditer(r"\$\{(\w+)(:?[-?+])?[^}]*\}", text):
        name, kind = match.group(1), match.group(2) or ""
        found[name] = found.get(name, False) or "-" in kind
    return found


def env_file_names(path: Path) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(line.split("=", 1)[0])
    return names


def kubernetes_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(KUBERNETES_DIR.glob("*.yaml")):
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        return doc["spec"]["template"]["spec"]
    return None


def kubernetes_environments(docs: list[dict[str, Any]]) -> Iterator[ContainerEnv]:
    """Each container's variables: `env`, and every key of the ConfigMaps and Secrets of its
    `envFrom` (which must be defined in the manifests)."""
    sources = {
        (doc["kind"], doc["metadata"]["name"]): set(
            (doc.get("data") or {}) | (doc.get("stringData") or {})
        )
        for doc in docs
        if doc["kind"] in ("ConfigMap", "Secret")
    }
    for doc in docs:
        pod = _pod_spec(doc)
        if pod is None:
            continue
        for container in pod.get("initContainers", []) + pod["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in source:
                        ref = (kind, source[key]["name"])
                        assert ref in sources, f"{doc['metadata']['name']}: {ref} is not defined"
                        names |= sources[ref]
            where = f"{doc['kind']} {doc['metadata']['name']}, container {container['name']}"
            yield ContainerEnv(where, frozenset(names))


def dockerfile_environments() -> Iterator[ContainerEnv]:
    """The ENV of each Dockerfile (KEY=value pairs, continued lines joined)."""
    for path in DOCKERFILES:
        text = path.read_text().replace("\\\n", " ")
        names: set[str] = set()
        for line in text.splitlines():
            if line.strip().startswith("ENV "):
                names.update(re.findall(r"(\w+)=", line))
        yield ContainerEnv(f"{path.name} ENV", frozenset(names))
