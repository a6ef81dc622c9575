"""GET /loras: the LoRA catalogue (loras.yaml) as the original service lists it, limited to the
LoRA files a GPU worker of the pool reports having."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import ManifestsDep
from api.inventory import pool_inventory
from api.schemas import LoraPublic
from manifests.definitions import DEFAULT_POOL
from manifests.loading.loras import LORA_NAME_INPUT

router = APIRouter(tags=["workflows"])


@router.get(
    "/loras",
    response_model=list[LoraPublic],
    summary="The LoRAs of loras.yaml that the pool's GPU workers have",
)
async def list_loras(
    request: Request,
    manifests: ManifestsDep,
    pool: Annotated[
        str,
        Query(
            max_length=100,
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            description="The GPU pool whose workers' LoRA files count.",
        ),
    ] = DEFAULT_POOL,
) -> list[LoraPublic]:
    """Each loras.yaml entry whose file a GPU worker of `pool` has in its LoRA folder (any
    loader's `lora_name` choices). While no worker of the pool has reported its files, the whole
    catalogue: nothing says a LoRA is missing, as at submit, where names are then accepted."""
    snapshot = await manifests.snapshot()
    inventory = await pool_inventory(request, pool)
    present = inventory.choices_of_inputs(LORA_NAME_INPUT.fullmatch) if inventory else None
    return [
        LoraPublic(**entry.model_dump())
        for name, entry in snapshot.loras.items()
        if present is None or name in present
    ]
