"""Task ``optimize``: MGJA under AO for one pair; resumes from its checkpoint; holds a ``gpu`` slot."""

from __future__ import annotations

from prefect import get_run_logger, task

from align4d_core import stages

from .common import RETRY_DELAYS, gpu_slot, retry_transient, stage_cache_key
from .settings import resolved


@task(name="optimize", retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=retry_transient, cache_key_fn=stage_cache_key, persist_result=True)  # fmt: skip
def optimize(pair: dict, out: str, settings: dict, method: str, found: dict) -> dict:
    config, device = resolved(settings, method)
    logger = get_run_logger()
    every = max(1, config.optimize.steps // 10)

    def progress(step: int, steps: int, record: dict) -> None:
        if step % every == 0 or step == steps:
            logger.info("step %d/%d [%s] loss %.4g", step, steps, record["phase"], record["loss"])

    with gpu_slot():
        return stages.optimize_stage(stages.PairURIs(**pair["uris"]), out, config, device, found, progress)
