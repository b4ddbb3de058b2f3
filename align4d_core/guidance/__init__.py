"""Guidance backends behind one interface (DESIGN.md §5): ``zero123`` and the weight-free ``anchor``.

:func:`load_guidance` picks the backend named by :class:`~align4d_core.config.GuidanceConfig`.
The Zero123 module (diffusers, transformers) is imported only when it is used, so that importing
this package, and starting the CLI, stays fast.
"""

from __future__ import annotations

import torch

from align4d_core.config import GuidanceConfig
from align4d_core.guidance.anchor import AnchorGuidance
from align4d_core.guidance.base import Guidance, ViewDelta

BACKENDS = ("anchor", "zero123")

_ZERO123_EXPORTS = ("Zero123Guidance", "zero123_pose", "CameraProjection", "MissingWeightsError", "sds_timesteps")

__all__ = ["BACKENDS", "AnchorGuidance", "Guidance", "ViewDelta", "load_guidance", *_ZERO123_EXPORTS]


def load_guidance(config: GuidanceConfig, device: torch.device | str) -> Guidance:
    """The guidance backend of ``config`` on ``device``; Zero123 loads its weights here."""
    if config.backend == "anchor":
        return AnchorGuidance()
    if config.backend == "zero123":
        from align4d_core.guidance.zero123 import Zero123Guidance

        return Zero123Guidance(config, device)
    raise ValueError(f"unknown guidance backend {config.backend!r}; choose one of {', '.join(BACKENDS)}")


def __getattr__(name: str):
    """Lazy access to the Zero123 names (PEP 562): diffusers is imported on first use only."""
    if name in _ZERO123_EXPORTS:
        from align4d_core.guidance import zero123

        return getattr(zero123, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
