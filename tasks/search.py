"""Task ``search``: Object Distance Alignment (VAOD, MAOD) for one pair; holds a ``gpu`` slot."""

from __future__ import annotations

from align4d_core.io.manifest import Item
from align4d_core.pipeline import stages

from .common import gpu_slot, stage_task
from .settings import resolved


@stage_task("search")
def search(pair: dict, out: str, settings: dict, method: str) -> dict:
    config, device = resolved(settings, method)
    with gpu_slot():
        return stages.search_stage(Item(**pair["item"]), out, config, device)
