"""3D Gaussians: the raw parameters an optimizer updates and the activations a renderer reads.

The parameterisation is the one of 3D Gaussian Splatting and of its ``.ply`` files (DESIGN.md §4):
means, log-scales, quaternions (wxyz, normalised on use), logit opacities and the degree-0
spherical-harmonic coefficient ``sh0`` per colour channel (the PLY's ``f_dc_*``). Keeping the raw
parameters means that a PLY round trip is exact and an optimizer sees unconstrained values.

Every field may carry one leading batch dimension ``B`` (one set of Gaussians per camera, e.g. one
deformed state per video frame rendered in a single call); unbatched fields have no such dimension.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from align4d_core.errors import InputError

SH_C0 = 0.28209479177387814
"""Degree-0 real spherical harmonic, 1 / (2 sqrt(pi)): colour = 0.5 + SH_C0 * sh0, as in 3DGS."""


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    return (sh0 * SH_C0 + 0.5).clamp_min(0.0)


def inverse_sigmoid(p: Tensor, eps: float = 1e-6) -> Tensor:
    p = p.clamp(eps, 1.0 - eps)
    return torch.log(p) - torch.log1p(-p)


@dataclass
class Gaussians:
    means: Tensor  # ([B,] N, 3) world positions
    log_scales: Tensor  # ([B,] N, 3) log standard deviations along the local axes
    quats: Tensor  # ([B,] N, 4) rotations, wxyz, any norm
    opacity_logits: Tensor  # ([B,] N) logit of the peak opacity
    sh0: Tensor  # ([B,] N, 3) degree-0 SH coefficients (PLY f_dc_0..2)

    # --- activations -------------------------------------------------------------------------
    @property
    def scales(self) -> Tensor:
        return torch.exp(self.log_scales)

    @property
    def rotations(self) -> Tensor:
        return torch.nn.functional.normalize(self.quats, dim=-1)

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def colors(self) -> Tensor:
        return sh0_to_rgb(self.sh0)

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_activated(
        cls,
        means: Tensor,
        scales: Tensor,
        quats: Tensor,
        opacities: Tensor,
        colors: Tensor,
    ) -> Gaussians:
        """From renderer-space values (scales > 0, opacities and colours in [0, 1])."""
        return cls(
            means=means,
            log_scales=torch.log(scales),
            quats=torch.nn.functional.normalize(quats, dim=-1),
            opacity_logits=inverse_sigmoid(opacities),
            sh0=rgb_to_sh0(colors),
        )

    @classmethod
    def empty(cls, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Gaussians:
        z = lambda *s: torch.zeros(*s, dtype=dtype, device=device)  # noqa: E731
        return cls(z(0, 3), z(0, 3), z(0, 4), z(0), z(0, 3))

    # --- bookkeeping -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.means.shape[-2])

    @property
    def batched(self) -> bool:
        return self.means.dim() == 3

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def map(self, fn) -> Gaussians:
        return Gaussians(**{name: fn(t) for name, t in self.tensors().items()})

    def to(self, *args, **kwargs) -> Gaussians:
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> Gaussians:
        return self.map(lambda t: t.detach())

    def clone(self) -> Gaussians:
        return self.map(lambda t: t.clone())

    def select(self, index: Tensor) -> Gaussians:
        """The Gaussians picked by a boolean mask or an index over N."""
        return self.map(lambda t: t[..., index, :] if t.dim() == self.means.dim() else t[..., index])

    @staticmethod
    def cat(parts: list[Gaussians]) -> Gaussians:
        names = [f.name for f in fields(Gaussians)]
        dims = {n: (-2 if getattr(parts[0], n).dim() == parts[0].means.dim() else -1) for n in names}
        return Gaussians(**{n: torch.cat([getattr(p, n) for p in parts], dim=dims[n]) for n in names})

    def validate(self, what: str = "gaussians") -> Gaussians:
        """Shapes agree and every value is finite; the error names the offending field and count."""
        lead = self.means.shape[:-1]
        expected = {
            "means": lead + (3,),
            "log_scales": lead + (3,),
            "quats": lead + (4,),
            "opacity_logits": lead,
            "sh0": lead + (3,),
        }
        if self.means.dim() not in (2, 3) or self.means.shape[-1] != 3:
            raise InputError(f"means must be (N, 3) or (B, N, 3), got {tuple(self.means.shape)}", uri=what)
        for name, shape in expected.items():
            tensor = getattr(self, name)
            if tuple(tensor.shape) != tuple(shape):
                raise InputError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}", uri=what)
            bad = ~torch.isfinite(tensor)
            if bool(bad.any()):
                raise InputError(f"{name} has {int(bad.sum())} NaN/inf values", uri=what)
        zero_quats = self.quats.norm(dim=-1) == 0
        if bool(zero_quats.any()):
            raise InputError(f"quats has {int(zero_quats.sum())} zero-norm rotations", uri=what)
        return self

    def extent(self) -> tuple[Tensor, float]:
        """Centre of the bounding box of the means, and the radius of the sphere around it."""
        means = self.means.detach().reshape(-1, 3)
        if means.shape[0] == 0:
            return torch.zeros(3, dtype=self.dtype, device=self.device), 0.0
        lo, hi = means.min(dim=0).values, means.max(dim=0).values
        centre = 0.5 * (lo + hi)
        return centre, float((means - centre).norm(dim=-1).max())
