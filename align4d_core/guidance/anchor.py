"""The weight-free guidance fallback (DESIGN.md §5).

Without diffusion weights there is no prior for unseen views, so the backend keeps only what needs
no model: L_mot is off (``motion_loss`` returns None), L_geo (eq. 8) becomes an image loss to the
same-view render of the 3D input, weighted by the caller with the same (T-t)/T factor of eq. 9, and
there is no MAOD probe (``probe_azimuths`` is empty, so ODA uses MAOD = VAOD).
"""

from __future__ import annotations

import torch
from torch import Tensor

from align4d_core.guidance.base import ViewDelta

_NO_PROBE = (
    "the 'anchor' guidance has no diffusion prior to probe; its probe_azimuths is empty, so ODA "
    "takes MAOD = VAOD. Use guidance.backend='zero123' with weights for the SDS probe of eq. 5"
)


class AnchorGuidance:
    """Image-space stand-in for the multiview prior: L_geo as MSE, no L_mot, no probe."""

    name = "anchor"
    probe_azimuths: tuple[float, ...] = ()

    def set_frames(self, frames: Tensor) -> None:
        """Nothing to precompute: no loss of this backend is conditioned on the video frames."""

    def motion_loss(
        self,
        renders: Tensor,
        frame_index: Tensor,
        delta: ViewDelta,
        generator: torch.Generator,
        step_ratio: float | None = None,
    ) -> None:
        """L_mot is off: transferring motion to unseen views needs a multiview prior (eq. 7)."""
        return None

    def geometry_loss(
        self, renders: Tensor, references: Tensor, generator: torch.Generator, step_ratio: float | None = None
    ) -> Tensor:
        """Per-sample mean squared error to the same-view renders of the 3D input, (B,).

        The Δpose-0 SDS of eq. 8 pulls each render toward its reference; without a model the
        direct pull is the pixel loss itself.
        """
        if renders.shape != references.shape:
            raise ValueError(f"renders {tuple(renders.shape)} and references {tuple(references.shape)} must match")
        return (renders - references).square().flatten(1).mean(dim=1)

    def probe(
        self, renders: Tensor, frame_index: Tensor, delta: ViewDelta, timesteps: tuple[int, ...], noise: Tensor
    ) -> Tensor:
        raise NotImplementedError(_NO_PROBE)

    def probe_noise(self, generator: torch.Generator) -> Tensor:
        raise NotImplementedError(_NO_PROBE)
