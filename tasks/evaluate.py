"""Task ``evaluate``: PSNR and SSIM of the eval views against the item's ground truth."""

from __future__ import annotations

from prefect import task

from align4d_core import stages

from .common import RETRY_DELAYS, retry_transient, stage_cache_key
from .settings import resolved


@task(name="evaluate", retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=retry_transient, cache_key_fn=stage_cache_key, persist_result=True)  # fmt: skip
def evaluate(pair: dict, out: str, settings: dict, method: str, rendered: dict) -> dict:
    config, _ = resolved(settings, method)
    return stages.evaluate_stage(stages.PairURIs(**pair["uris"]), out, config)
