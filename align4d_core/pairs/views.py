"""The two routes to an image that need no model: a video's first frame, a 3D object's front view.

Paper Section III-E: "(c) for videos ... we extract the first frame as the reference image for 3D
reconstruction"; "(d) 3D assets ... are rendered from canonical viewpoints. The rendered image is
then used for video synthesis". The canonical viewpoint is align4d's front view (azimuth 0,
elevation 0, DESIGN.md §4); the paper does not give the distance, so the *canonical distance* is
the one at which the object's bounding sphere about the origin (the point the cameras orbit) spans
``front_view.fill`` of the view's height — 0.8, the framing DreamGaussian's preprocessing gives an
input image (a 0.2 border). The video generated from that render then starts at this distance,
which is what ODA's VAOD should find again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from align4d_core.config import FrontViewConfig, SearchConfig
from align4d_core.errors import InputError
from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import render

__all__ = ["Picture", "canonical_distance", "first_frame", "front_view"]

log = logging.getLogger(__name__)


@dataclass
class Picture:
    """One image of a pair: colour composited on white and its mask (None when it has none yet)."""

    rgb: Tensor  # (H, W, 3) float32 in [0, 1], on white
    alpha: Tensor | None = None  # (H, W, 1)


def first_frame(frames: Tensor, masks: Tensor | None) -> Picture:
    """Frame 0 of a video ``(T, H, W, 3)`` with its mask (from ``masks (T, H, W, 1)`` when given)."""
    return Picture(frames[0].clone(), None if masks is None else masks[0].clone())


def canonical_distance(gaussians: Gaussians, fill: float, fovy_deg: float) -> float:
    """The distance at which the bounding sphere of ``gaussians`` about the origin spans ``fill`` of
    the view's height: the sphere's silhouette subtends ``atan(fill * tan(fovy / 2))``."""
    if not 0.0 < fill <= 1.0:
        raise InputError(f"pairs.front_view.fill must lie in (0, 1], got {fill}", field="front_view")
    radius = float(gaussians.means.detach().norm(dim=-1).max())
    if not math.isfinite(radius) or radius <= 0.0:
        raise InputError("the 3D object has no extent (every Gaussian at the origin)", field="object")
    half_angle = math.atan(fill * math.tan(math.radians(fovy_deg) / 2.0))
    return radius / math.sin(half_angle)


def front_view(gaussians: Gaussians, config: FrontViewConfig, fovy_deg: float) -> tuple[Picture, float]:
    """The front render of a 3D object (on white, with its alpha) and the distance it was taken at."""
    distance = config.distance if config.distance is not None else canonical_distance(gaussians, config.fill, fovy_deg)
    if distance > SearchConfig.d_max:
        log.warning(
            "the front view is taken at distance %.3f, beyond ODA's search range (d_max %.3f): VAOD cannot "
            "find it; scale the object down or set pairs.front_view.distance",
            distance,
            SearchConfig.d_max,
        )
    cameras = orbit_cameras(0.0, 0.0, distance, width=config.size, fovy_deg=fovy_deg)
    with torch.no_grad():
        out = render(gaussians, cameras, background=1.0)
    rgb = out.rgb[0].clamp(0.0, 1.0).float().cpu()
    alpha = out.alpha[0].clamp(0.0, 1.0).float().cpu()
    return Picture(rgb, alpha), float(distance)
