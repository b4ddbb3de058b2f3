"""Task ``evaluate``: PSNR and SSIM of the eval views against the item's ground truth."""

from __future__ import annotations

from align4d_core.io.manifest import Item
from align4d_core.pipeline import stages

from .common import stage_task
from .settings import resolved


@stage_task("evaluate")
def evaluate(pair: dict, out: str, settings: dict, method: str, rendered: dict) -> dict:
    config, _ = resolved(settings, method)
    return stages.evaluate_stage(Item(**pair["item"]), out, config)
