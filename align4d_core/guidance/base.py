"""The interface every multiview diffusion prior implements for Align4D (DESIGN.md §5).

MGJA and ODA talk to a guidance backend only through :class:`Guidance`, so swapping Zero123 for
another model (or for the weight-free ``anchor`` fallback) is a config change. Views are described
in align4d's camera convention (DESIGN.md §4: degrees, positive elevation above the object); each
backend converts to its model's own pose encoding in one place.

Losses are returned per sample (shape (B,)), because eq. 9 weights each sample by its frame
(t/T·λ for motion, (T-t)/T·λ for geometry); the caller applies the weights and the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class ViewDelta:
    """Target view relative to the conditioning view, in align4d's convention, one per sample."""

    elevation: Tensor  # (B,) degrees, target minus condition (positive: target higher)
    azimuth: Tensor  # (B,) degrees, target minus condition
    radius: Tensor  # (B,) object-distance units, target minus condition

    @classmethod
    def zeros(cls, batch: int, device: torch.device | str = "cpu") -> ViewDelta:
        z = torch.zeros(batch, dtype=torch.float32, device=device)
        return cls(z, z.clone(), z.clone())


@runtime_checkable
class Guidance(Protocol):
    """A multiview diffusion prior as Align4D uses it."""

    name: str
    probe_azimuths: tuple[float, ...]
    """Azimuths of the MAOD probe views: (-90, 0, 90, 180) (eq. 5), (-90, 0, 90) for models with
    a fixed internal distance (eq. 11), () for a backend without a probe (then MAOD = VAOD)."""

    def set_frames(self, frames: Tensor) -> None:
        """Remember the video frames (T, H, W, 3) on white: the conditions of L_mot and the probe.

        Call it before :meth:`motion_loss` and :meth:`probe`, which index these frames."""

    def motion_loss(
        self,
        renders: Tensor,
        frame_index: Tensor,
        delta: ViewDelta,
        generator: torch.Generator,
        step_ratio: float | None = None,
    ) -> Tensor | None:
        """L_mot of eq. 7 per sample, (B,): SDS of ``renders`` (B, H, W, 3) conditioned on video
        frames ``frame_index`` (B,) seen from ``delta``. None when the backend has no motion prior.
        ``step_ratio`` (step/steps) is for timestep schedules that anneal (``guidance.t_schedule``)."""

    def geometry_loss(
        self, renders: Tensor, references: Tensor, generator: torch.Generator, step_ratio: float | None = None
    ) -> Tensor:
        """L_geo of eq. 8 per sample, (B,): ``renders`` of the 4D object against ``references``,
        the same-view renders of the 3D input (Δpose 0)."""

    def probe(
        self, renders: Tensor, frame_index: Tensor, delta: ViewDelta, timesteps: tuple[int, ...], noise: Tensor
    ) -> Tensor:
        """The MAOD probe of eq. 5 per sample, (B,): w(τ)·‖ε̂(z_τ; I, c, τ) − ε‖² averaged over
        ``timesteps``, with the same fixed ``noise`` (one latent, broadcast) for every sample."""

    def probe_noise(self, generator: torch.Generator) -> Tensor:
        """One latent-shaped noise tensor for :meth:`probe`."""
