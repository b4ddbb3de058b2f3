"""Task ``optimize``: MGJA under AO for one pair; resumes from its checkpoint; holds a ``gpu`` slot."""

from __future__ import annotations

from prefect import get_run_logger

from align4d_core.io.manifest import Item
from align4d_core.pipeline import stages

from .common import gpu_slot, stage_task
from .settings import resolved


@stage_task("optimize")
def optimize(pair: dict, out: str, settings: dict, method: str, found: dict) -> dict:
    config, device = resolved(settings, method)
    logger = get_run_logger()
    every = max(1, config.optimize.steps // 10)

    def progress(step: int, steps: int, record: dict) -> None:
        if step % every == 0 or step == steps:
            logger.info("step %d/%d [%s] loss %.4g", step, steps, record["phase"], record["loss"])

    with gpu_slot():
        return stages.optimize_stage(Item(**pair["item"]), out, config, device, found, progress)
