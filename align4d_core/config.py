"""Every configuration of align4d, in one place, as dataclasses.

Defaults taken from the paper or from DreamGaussian4D name their source. A stage takes its own
config; a run's config is the nesting of them, saved with the run and hashed into cache keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cameras import FOVY_DEG

EVAL_AZIMUTHS = (-75.0, 15.0, 105.0, 195.0)
"""Ground-truth test views of the Consistent4D protocol, degrees, elevation 0 (DESIGN.md §7)."""


@dataclass(frozen=True)
class SampleConfig:
    """The bundled synthetic X4D sample (``align4d sample``)."""

    seed: int = 0
    frames: int = 16
    size: int = 128  # pixels, square
    gaussians: int = 2500  # per procedural .ply object; mesh objects are sampled by the loader
    fps: float = 8.0
    fovy_deg: float = FOVY_DEG
    eval_azimuths: tuple[float, ...] = EVAL_AZIMUTHS
    items: tuple[str, ...] = field(default_factory=tuple)  # empty: every item
