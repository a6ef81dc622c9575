"""The routing rules as pure functions: which worker a job's models make the best place for it
(warm, then on disk, else an idle GPU or the one given the fewest model sets), where a job goes
that its worker did not take in time, and what a worker reports as loaded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from activities.workers.loaded_models import LoadedModels
from temporal_workflows.inventory import (
    LoaderChoices,
    PoolInventory,
    WorkerInventory,
    inventory_digest,
)
from temporal_workflows.routing import Preference, after_wait, job_models, prefer_worker

CKPT = ("CheckpointLoaderSimple", "ckpt_name")
LORA = ("LoraLoader", "lora_name")


def choices(ckpts: list[str], loras: list[str] | None = None) -> LoaderChoices:
    found: LoaderChoices = {CKPT[0]: {CKPT[1]: sorted(ckpts)}}
    if loras is not None:
        found[LORA[0]] = {LORA[1]: sorted(loras)}
    return found


def pool(
    workers: dict[str, tuple[LoaderChoices, LoaderChoices]], busy: set[str] | None = None
) -> PoolInventory:
    """A pool inventory from {worker: (files on its disk, models loaded)}; the `busy` workers
    report their GPU busy, the others idle."""
    now = datetime.now(UTC)
    inventory = PoolInventory(pool="p")
    for name, (disk, loaded) in workers.items():
        digest = inventory_digest(disk)
        inventory.inventories[digest] = disk
        inventory.workers[name] = WorkerInventory(
            digest=digest,
            reported_at=now,
            expires_at=now + timedelta(minutes=1),
            loaded=loaded,
            idle=name not in (busy or set()),
        )
    return inventory


def prompt(ckpt: str, lora: str | None = None, sampler: str = "euler") -> dict[str, Any]:
    graph: dict[str, Any] = {
        "1": {"class_type": CKPT[0], "inputs": {CKPT[1]: ckpt}},
        "2": {"class_type": "KSampler", "inputs": {"sampler_name": sampler, "model": ["1", 0]}},
    }
    if lora is not None:
        graph["3"] = {"class_type": LORA[0], "inputs": {LORA[1]: lora, "model": ["1", 0]}}
    return graph


ALL_DISK = choices(["a.safetensors", "b.safetensors"], ["l1.safetensors"])
A = [(*CKPT, "a.safetensors")]


def test_the_models_of_a_job_are_its_loader_inputs_only():
    inventory = pool({"gpu-1": (ALL_DISK, {})})
    assert job_models(prompt("a.safetensors", "l1.safetensors"), inventory) == [
        (*CKPT, "a.safetensors"),
        (*LORA, "l1.safetensors"),
    ]


def test_a_worker_holding_the_model_loaded_is_preferred():
    inventory = pool(
        {
            "gpu-1": (ALL_DISK, choices(["a.safetensors"])),
            "gpu-2": (ALL_DISK, choices(["b.safetensors"])),
        }
    )
    job = prompt("b.safetensors")
    preference = prefer_worker(inventory, job_models(job, inventory), "task-1")
    assert (preference.routing, preference.worker) == ("warm", "gpu-2")
    assert preference.reason == "b.safetensors loaded on gpu-2"


def test_the_worker_holding_most_of_the_models_wins_and_says_how_many():
    inventory = pool(
        {
            "gpu-1": (ALL_DISK, choices(["a.safetensors"])),
            "gpu-2": (ALL_DISK, choices(["a.safetensors"], ["l1.safetensors"])),
        }
    )
    job = prompt("a.safetensors", "l1.safetensors")
    assert prefer_worker(inventory, job_models(job, inventory), "t").worker == "gpu-2"
    only_ckpt = pool({"gpu-1": (ALL_DISK, choices(["a.safetensors"])), "gpu-2": (ALL_DISK, {})})
    preference = prefer_worker(only_ckpt, job_models(job, only_ckpt), "t")
    assert (preference.routing, preference.worker) == ("warm", "gpu-1")
    assert preference.reason.endswith("(1 of 2 files)")


def test_a_worker_with_the_files_on_disk_is_preferred_when_not_all_have_them():
    inventory = pool(
        {
            "gpu-1": (choices(["a.safetensors"]), {}),
            "gpu-2": (choices(["a.safetensors", "b.safetensors"]), {}),
        }
    )
    job = prompt("b.safetensors")
    preference = prefer_worker(inventory, job_models(job, inventory), "t")
    assert (preference.routing, preference.worker) == ("on_disk", "gpu-2")


def test_a_job_without_a_routing_choice_goes_to_the_pool_queue():
    inventory = pool({"gpu-1": (ALL_DISK, {}), "gpu-2": (ALL_DISK, {})})
    job = job_models(prompt("a.safetensors"), inventory)
    assert prefer_worker(None, job, "t").routing == "cold"
    assert prefer_worker(None, job, "t").worker is None
    assert prefer_worker(inventory, [], "t").reason == "the graph names no model file"
    alone = pool({"gpu-1": (ALL_DISK, choices(["a.safetensors"]))})
    assert prefer_worker(alone, job, "t") == Preference("cold", None, "the pool has one GPU worker")


def test_models_nobody_holds_go_to_an_idle_gpu_and_the_next_jobs_follow_them():
    inventory = pool({"gpu-1": (ALL_DISK, {}), "gpu-2": (ALL_DISK, {})}, busy={"gpu-1"})
    job = job_models(prompt("a.safetensors"), inventory)
    first = prefer_worker(inventory, job, "task-1")
    assert (first.routing, first.worker) == ("cold", "gpu-2")
    assert first.reason == "no GPU worker has a.safetensors loaded; gpu-2 (idle) takes it"
    claims = {frozenset(job): ("gpu-2", datetime.now(UTC))}
    follower = prefer_worker(inventory, job, "task-2", claims)
    assert (follower.routing, follower.worker) == ("warm", "gpu-2")
    assert follower.reason == "a.safetensors goes to gpu-2 with the jobs before it"


@pytest.mark.parametrize("busy", [set(), {"gpu-1"}, {"gpu-1", "gpu-2"}])
def test_a_backlog_routed_before_any_load_is_spread_one_model_set_per_gpu(busy: set[str]):
    inventory = pool({f"gpu-{n}": (ALL_DISK, {}) for n in (1, 2)}, busy=busy)
    claims: dict[frozenset, tuple[str, datetime]] = {}
    owners = {}
    for n, ckpt in enumerate(["a", "b", "a", "b", "a"]):
        job = job_models(prompt(f"{ckpt}.safetensors"), inventory)
        preference = prefer_worker(inventory, job, f"task-{n}", claims)
        assert preference.worker is not None
        claims[frozenset(job)] = (preference.worker, datetime.now(UTC))
        owners.setdefault(ckpt, set()).add(preference.worker)
    assert owners["a"] | owners["b"] == {"gpu-1", "gpu-2"}
    assert len(owners["a"]) == len(owners["b"]) == 1, owners


def test_jobs_follow_their_model_set_to_a_busy_worker_while_another_idles():
    inventory = pool({"gpu-1": (ALL_DISK, {}), "gpu-2": (ALL_DISK, {})}, busy={"gpu-1"})
    job = job_models(prompt("a.safetensors"), inventory)
    follower = prefer_worker(inventory, job, "t", {frozenset(job): ("gpu-1", datetime.now(UTC))})
    assert (follower.routing, follower.worker) == ("warm", "gpu-1")


def test_a_job_not_taken_in_time_goes_to_the_pool_only_while_another_gpu_idles():
    both_busy = pool({"gpu-1": (ALL_DISK, {}), "gpu-2": (ALL_DISK, {})}, busy={"gpu-1", "gpu-2"})
    stay = after_wait(both_busy, "gpu-1", 5, A, "t")
    assert (stay.routing, stay.worker) == ("warm", "gpu-1")
    assert (
        stay.reason == "gpu-1 did not take it within 5 s; no GPU idles, so it still waits for gpu-1"
    )
    one_idle = pool({"gpu-1": (ALL_DISK, {}), "gpu-2": (ALL_DISK, {})}, busy={"gpu-1"})
    spill = after_wait(one_idle, "gpu-1", 5, A, "t")
    assert spill == Preference("cold", None, "gpu-1 did not take it within 5 s; gpu-2 idle")
    gone = after_wait(pool({"gpu-2": (ALL_DISK, {})}, busy={"gpu-2"}), "gpu-1", 5, A, "t")
    assert (gone.routing, gone.worker) == ("cold", None)


def test_a_job_not_taken_in_time_goes_only_to_an_idle_gpu_with_its_files():
    only_b = choices(["b.safetensors"])
    without = pool({"gpu-1": (ALL_DISK, {}), "gpu-2": (only_b, {})}, busy={"gpu-1"})
    stay = after_wait(without, "gpu-1", 5, A, "t")
    assert (stay.routing, stay.worker) == ("warm", "gpu-1")
    three = pool(
        {"gpu-1": (ALL_DISK, {}), "gpu-2": (only_b, {}), "gpu-3": (ALL_DISK, {})}, busy={"gpu-1"}
    )
    moved = after_wait(three, "gpu-1", 5, A, "t")
    assert moved == Preference(
        "cold", "gpu-3", "gpu-1 did not take it within 5 s; gpu-3 idle, with its files on disk"
    )


def test_ties_are_spread_by_task_id_and_stable_on_replay():
    warm = choices(["a.safetensors"])
    inventory = pool({f"gpu-{n}": (ALL_DISK, warm) for n in range(1, 5)})
    models = job_models(prompt("a.safetensors"), inventory)
    picks = {prefer_worker(inventory, models, f"task-{n}").worker for n in range(40)}
    assert picks == {"gpu-1", "gpu-2", "gpu-3", "gpu-4"}
    assert prefer_worker(inventory, models, "task-7") == prefer_worker(inventory, models, "task-7")


def test_loaded_models_follow_the_cache_and_are_dropped_with_it():
    changes: list[LoaderChoices] = []
    loaded = LoadedModels(kept=1)
    loaded.changed = lambda: changes.append(loaded.loaded())
    loaded.submitted(prompt("a.safetensors"), ALL_DISK)
    loaded.submitted(prompt("a.safetensors"), ALL_DISK)  # unchanged: no report
    loaded.submitted(prompt("b.safetensors", "l1.safetensors"), ALL_DISK)
    loaded.clear()
    assert changes == [
        choices(["a.safetensors"]),
        choices(["b.safetensors"], ["l1.safetensors"]),
        {},
    ]


def test_a_cache_of_two_prompts_keeps_both_model_sets():
    loaded = LoadedModels(kept=2)
    for ckpt in ("a.safetensors", "b.safetensors", "a.safetensors", "c.safetensors"):
        loaded.submitted(prompt(ckpt), ALL_DISK)
    assert loaded.loaded() == choices(["a.safetensors", "c.safetensors"])


def test_model_sets_given_before_a_worker_went_idle_are_done():
    earlier = datetime.now(UTC) - timedelta(seconds=10)
    inventory = pool({"gpu-1": (ALL_DISK, {}), "gpu-2": (ALL_DISK, {})}, busy={"gpu-2"})
    # gpu-1 ran b before it reported idle; gpu-2, busy, was given a just now.
    claims = {
        frozenset(job_models(prompt("b.safetensors"), inventory)): ("gpu-1", earlier),
        frozenset(job_models(prompt("a.safetensors"), inventory)): ("gpu-2", datetime.now(UTC)),
    }
    job = job_models(prompt("a.safetensors", "l1.safetensors"), inventory)
    preference = prefer_worker(inventory, job, "t", claims)
    assert (preference.routing, preference.worker) == ("cold", "gpu-1")


def test_a_prompt_naming_a_file_not_held_loaded_counts_as_a_load():
    loaded = LoadedModels(kept=1)
    runs = ["a.safetensors", "a.safetensors", "b.safetensors", "a.safetensors"]
    assert [loaded.submitted(prompt(ckpt), ALL_DISK) for ckpt in runs] == [True, False, True, True]
    assert loaded.submitted(prompt("a.safetensors", "l1.safetensors"), ALL_DISK) is True
    assert loaded.submitted({"1": {"class_type": "KSampler", "inputs": {}}}, ALL_DISK) is False
