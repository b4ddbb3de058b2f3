"""Task ``render``: per-frame PLYs, turntable and side-by-side videos, eval views; holds a ``gpu`` slot."""

from __future__ import annotations

from prefect import task

from align4d_core import stages

from .common import RETRY_DELAYS, gpu_slot, retry_transient, stage_cache_key
from .settings import resolved


@task(name="render", retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_condition_fn=retry_transient, cache_key_fn=stage_cache_key, persist_result=True)  # fmt: skip
def render(pair: dict, out: str, settings: dict, method: str, found: dict, optimized: dict) -> dict:
    config, _ = resolved(settings, method)
    with gpu_slot():
        return stages.render_stage(stages.PairURIs(**pair["uris"]), out, config, found)
