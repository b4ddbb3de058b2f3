"""Prefect tasks of align4d: one per pipeline stage, passing URIs and small JSON, never tensors.

Each task loads its inputs from storage, calls the matching stage of ``align4d_core`` (see
``align4d_core/stages.py``) and returns the stage's small JSON result (DESIGN.md §1, §2).
"""

from .aggregate import aggregate
from .evaluate import evaluate
from .optimize import optimize
from .pairs import pairs
from .render import render
from .search import search

__all__ = ["aggregate", "evaluate", "optimize", "pairs", "render", "search"]
