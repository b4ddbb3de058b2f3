"""Prefect tasks of align4d: one per pipeline stage, passing URIs and small JSON, never tensors.

Each task calls the matching stage of ``align4d_core`` (``align4d_core/pipeline/stages.py``, the
pair stage in ``align4d_core/pairs/stage.py``) and returns the stage's small JSON result (DESIGN.md
§1, §2). The stages' own markers are the one cache: see :mod:`tasks.common`.
"""

from .aggregate import aggregate
from .evaluate import evaluate
from .optimize import optimize
from .pairs import pairs
from .render import render
from .search import search

__all__ = ["aggregate", "evaluate", "optimize", "pairs", "render", "search"]
