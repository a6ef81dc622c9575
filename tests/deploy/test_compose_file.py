"""deploy/docker-compose.yml, checked without a Docker engine: it follows the compose
specification, gives our containers only variables the service reads, takes its secrets from
deploy/.env, and starts in any order (restart policies, health checks, one-shot setup)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import jsonschema
import pytest

from tests.support.deploy import (
    COMPOSE_ENV_EXAMPLE,
    compose_environments,
    compose_interpolated_variables,
    env_file_names,
    is_ours,
    load_compose,
    unread_variables,
)

# Services that run once and exit; every other service runs for good.
ONE_SHOT = {"temporal-schema", "temporal-namespace", "minio-bucket", "comfy-setup"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def compose_spec_validator() -> jsonschema.protocols.Validator:
    """The compose specification's JSON schema, as check-jsonschema vendors it."""
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = compose_spec_validator()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema does refuse what compose refuses: a misspelt key.
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["restrat"] = "always"
    assert not validator.is_valid(broken)


def test_our_containers_get_only_variables_the_service_reads(compose: dict[str, Any]) -> None:
    environments = list(compose_environments(compose))
    assert unread_variables(environments) == {}
    assert len(environments) == 5  # setup, API, control worker, two GPU workers


def test_env_example_lists_exactly_the_variables_the_compose_file_needs() -> None:
    used = compose_interpolated_variables()
    listed = env_file_names(COMPOSE_ENV_EXAMPLE)
    assert len(listed) == len(set(listed)), "a variable listed twice"
    required = {name for name, has_default in used.items() if not has_default}
    assert sorted(required - set(listed)) == []
    assert sorted(set(listed) - set(used)) == []
    assert {"COMFY_API_KEYS", "COMFY_URL_SIGNING_KEY"} <= required


def test_the_api_listens_on_every_interface_with_api_keys(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["command"][:3] == ["api", "--host", "0.0.0.0"]
    assert api["environment"]["COMFY_API_KEYS"].startswith("${COMFY_API_KEYS:?")


def test_long_running_services_restart_and_wait_for_what_they_need(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert ONE_SHOT <= set(services)
    for name, service in services.items():
        policy = service.get("restart")
        assert policy == ("on-failure" if name in ONE_SHOT else "unless-stopped"), name
        for needed, condition in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if needed in ONE_SHOT else "service_healthy"
            assert condition == {"condition": expected}, f"{name} -> {needed}"
            assert needed in ONE_SHOT or "healthcheck" in services[needed], needed
    ours = [name for name, service in services.items() if is_ours(service)]
    for name in ours:
        if name != "comfy-setup":
            assert "comfy-setup" in services[name]["depends_on"], name
    assert services["comfy-setup"]["command"] == ["setup"]


def test_the_api_health_check_asks_only_whether_jobs_are_accepted(
    compose: dict[str, Any],
) -> None:
    check = " ".join(compose["services"]["api"]["healthcheck"]["test"])
    assert "/ready/api" in check


def test_one_gpu_worker_per_gpu_and_a_second_behind_a_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    devices = {}
    for name in ("gpu-worker-0", "gpu-worker-1"):
        worker = services[name]
        [device] = worker["deploy"]["resources"]["reservations"]["devices"]
        devices[name] = device["device_ids"]
        assert worker["command"] == ["gpu-worker"]
    assert devices == {"gpu-worker-0": ["0"], "gpu-worker-1": ["1"]}
    assert "profiles" not in services["gpu-worker-0"]
    assert services["gpu-worker-1"]["profiles"] == ["gpu1"]
    names = {services[n]["environment"]["COMFY_WORKER_NAME"] for n in devices}
    assert len(names) == 2
