"""Task ``render``: per-frame PLYs, turntable and side-by-side videos, eval views; holds a ``gpu`` slot."""

from __future__ import annotations

from align4d_core.io.manifest import Item
from align4d_core.pipeline import stages

from .common import gpu_slot, stage_task
from .settings import resolved


@stage_task("render")
def render(pair: dict, out: str, settings: dict, method: str, found: dict, optimized: dict) -> dict:
    config, _ = resolved(settings, method)
    with gpu_slot():
        return stages.render_stage(Item(**pair["item"]), out, config, found)
