"""Motion-Geometry Joint Alignment (Section III-C): the losses of eq. 6-10.

* KSVA (eq. 6): at the known viewpoint, the front view at VAOD, every sampled frame's render must
  match the video frame, and its alpha the frame's mask.
* MGJA (eq. 10, :func:`mgja_loss`): their sum, the loss of an optimisation step.
* USVA (eq. 7-9): at N random unknown viewpoints per frame, one multiview prior gives L_mot
  (conditioned on the video frame I_t: motion) and L_geo (conditioned on the same-view render of
  the 3D input, Δpose 0: geometry), weighted t/T·λ and (T-t)/T·λ, so that early frames lean on
  the 3D input's geometry and late frames on the video's motion.

The renders come from the optimizer; these functions only score them, so they are easy to test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from align4d_core.config import MGJAConfig
from align4d_core.guidance.base import Guidance, ViewDelta


def known_view_loss(
    rgb: Tensor, alpha: Tensor, frames: Tensor, masks: Tensor | None, config: MGJAConfig, ramp: float = 1.0
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 6 with DreamGaussian4D's weights: λ_rgb·MSE(x, I_t) + λ_mask·MSE(α, M_t), mean over frames.

    ``ramp`` multiplies both terms (DreamGaussian4D ramps them with step/steps; see
    ``MGJAConfig.ramp_known_view``). Without masks only the colour term applies.
    """
    colour = F.mse_loss(rgb, frames)
    loss = config.lambda_rgb * ramp * colour
    parts = {"ksva_rgb": float(colour.detach())}
    if masks is not None:
        mask = F.mse_loss(alpha, masks)
        loss = loss + config.lambda_mask * ramp * mask
        parts["ksva_mask"] = float(mask.detach())
    return loss, parts


def usva_weights(frame_index: Tensor, n_frames: int) -> tuple[Tensor, Tensor]:
    """Eq. 9's t/T and (T-t)/T for 0-based frame indices (the paper's t runs 1..T)."""
    t = frame_index.to(torch.float32) + 1.0
    return t / n_frames, (n_frames - t) / n_frames


@dataclass
class RandomViews:
    """N random unknown viewpoints per sampled frame, relative to the front view."""

    frame_index: Tensor  # (B,) frame of each view
    elevation: Tensor  # (B,) degrees
    azimuth: Tensor  # (B,) degrees

    def delta(self) -> ViewDelta:
        """The view relative to the video's front view (elevation 0, azimuth 0)."""
        return ViewDelta(self.elevation, self.azimuth, torch.zeros_like(self.elevation))


def random_views(frame_index: Tensor, config: MGJAConfig, generator: torch.Generator) -> RandomViews:
    """``config.views`` views per frame: elevation uniform in the range, azimuth in [-180, 180)."""
    frames = frame_index.repeat_interleave(config.views)
    low, high = config.elevation_range
    elevation = low + (high - low) * torch.rand(len(frames), generator=generator)
    azimuth = -180.0 + 360.0 * torch.rand(len(frames), generator=generator)
    return RandomViews(frames, elevation, azimuth)


def unknown_view_loss(
    guidance: Guidance,
    views: RandomViews,
    motion_renders: Tensor | None,
    geometry_renders: Tensor,
    references: Tensor,
    n_frames: int,
    config: MGJAConfig,
    generator: torch.Generator,
    step_ratio: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 9: mean over views of t/T·λ·L_mot + (T-t)/T·λ·L_geo.

    ``motion_renders`` are the 4D object's renders of ``views`` at VAOD (eq. 7), ``geometry_renders``
    its renders at MAOD and ``references`` the 3D input's at the same views and MAOD (eq. 8). A
    backend without a motion prior (``anchor``) returns no L_mot; its L_geo is an image loss, which
    gets the anchor's own weight instead of λ (DESIGN.md §5).
    """
    w_mot, w_geo = usva_weights(views.frame_index, n_frames)
    parts: dict[str, float] = {}
    total = geometry_renders.new_zeros(())
    if motion_renders is not None:
        motion = guidance.motion_loss(motion_renders, views.frame_index, views.delta(), generator, step_ratio)
        if motion is not None:
            total = total + config.lambda_usva * (w_mot.to(motion) * motion).mean()
            parts["mot"] = float(motion.detach().mean())
    geometry = guidance.geometry_loss(geometry_renders, references, generator, step_ratio)
    weight = config.lambda_anchor if guidance.name == "anchor" else config.lambda_usva
    total = total + weight * (w_geo.to(geometry) * geometry).mean()
    parts["geo"] = float(geometry.detach().mean())
    return total, parts


@dataclass
class UnknownViews:
    """What USVA scores at the unknown viewpoints of one step (eq. 7, 8)."""

    views: RandomViews
    motion: Tensor | None  # the 4D object's renders at VAOD (eq. 7); None: the backend has no motion prior
    geometry: Tensor  # the 4D object's renders at MAOD (eq. 8)
    references: Tensor  # the 3D input's renders of the same views at MAOD (eq. 8's condition)


def mgja_loss(
    guidance: Guidance,
    known_rgb: Tensor,
    known_alpha: Tensor,
    frames: Tensor,
    masks: Tensor | None,
    unknown: UnknownViews | None,
    n_frames: int,
    config: MGJAConfig,
    generator: torch.Generator,
    *,
    ramp: float = 1.0,
    step_ratio: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 10: L_MGJA = L_KSVA + L_USVA, the loss of one optimisation step.

    L_KSVA (eq. 6, :func:`known_view_loss`) scores the front renders ``known_rgb``/``known_alpha``
    of the sampled frames against the video ``frames`` and ``masks``; L_USVA (eq. 9,
    :func:`unknown_view_loss`) the ``unknown`` views. ``unknown`` None is the ``mgja=False``
    ablation of Table III (the known view alone). Returns the loss and its parts, for the log.
    """
    loss, parts = known_view_loss(known_rgb, known_alpha, frames, masks, config, ramp)
    if unknown is not None:
        usva, usva_parts = unknown_view_loss(
            guidance,
            unknown.views,
            unknown.motion,
            unknown.geometry,
            unknown.references,
            n_frames,
            config,
            generator,
            step_ratio,
        )
        loss = loss + usva
        parts.update(usva_parts)
    return loss, parts
