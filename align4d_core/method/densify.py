"""Adaptive density control of the canonical Gaussians (3DGS; settings of Section IV-A).

A strategy object with one hook after each backward pass (gsplat's design): it accumulates how
hard the loss pulls each Gaussian across the screen, and every ``densify_interval`` steps clones
the small Gaussians and splits the large ones among those pulled harder than the threshold, then
prunes the nearly transparent and the oversized. Because the deformation field is a function of
position, new Gaussians inherit their neighbours' motion without any bookkeeping there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from align4d_core.config import OptimizeConfig
from align4d_core.method.trainable import TrainableGaussians
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render.projection import quat_to_rotmat


class DensifyStrategy:
    """Screen-space gradient statistics and the densify/prune step."""

    def __init__(self, n: int, extent: float, config: OptimizeConfig) -> None:
        self.config = config
        self.extent = extent  # radius of the canonical object, the scale "percent dense" refers to
        self.grad_sum = torch.zeros(n)
        self.count = torch.zeros(n)
        self.history: list[dict[str, int]] = []

    def accumulate(self, means2d: Tensor, width: int, height: int) -> None:
        """After backward: add ‖∂L/∂means2d‖ of every visible (camera, Gaussian).

        Gradients are rescaled to normalised device units and by the number of cameras, as gsplat's
        DefaultStrategy does, so the threshold does not depend on resolution or batch size.
        """
        if means2d.grad is None:
            return
        grad = means2d.grad.detach().clone()
        n_cams = grad.shape[0]
        grad[..., 0] *= width / 2.0 * n_cams
        grad[..., 1] *= height / 2.0 * n_cams
        norm = grad.norm(dim=-1)  # (B, N)
        seen = norm > 0
        self.grad_sum += (norm * seen).sum(0).cpu()
        self.count += seen.sum(0).cpu()

    def step(self, params: TrainableGaussians, generator: torch.Generator) -> dict[str, int]:
        """Clone, split and prune; reset the statistics. Returns what changed, for the log."""
        average = self.grad_sum / self.count.clamp_min(1)
        hot = average >= self.config.densify_grad_threshold
        g = params.gaussians()
        with torch.no_grad():
            max_scale = g.scales.max(dim=-1).values.cpu()
            small = max_scale <= self.config.percent_dense * self.extent
            clone, split = hot & small, hot & ~small
            added = [_clone(g, clone), _split(g, split, generator)]
            opacity = g.opacities.detach().cpu()
            prune = opacity < self.config.min_opacity
            if self.config.prune_scale is not None:
                prune |= max_scale > self.config.prune_scale * self.extent
            keep = ~(prune | split)
        params.update(keep, Gaussians.cat(added))
        self.reset(len(params))
        report = {
            "cloned": int(clone.sum()),
            "split": int(split.sum()),
            "pruned": int((prune & ~split).sum()),
            "gaussians": len(params),
        }
        self.history.append(report)
        return report

    def reset(self, n: int) -> None:
        self.grad_sum = torch.zeros(n)
        self.count = torch.zeros(n)


def _clone(g: Gaussians, mask: Tensor) -> Gaussians:
    return g.detach().select(mask.to(g.device))


def _split(g: Gaussians, mask: Tensor, generator: torch.Generator, pieces: int = 2) -> Gaussians:
    """Each selected Gaussian becomes ``pieces`` smaller ones drawn from it (3DGS: scale / 0.8N)."""
    parent = g.detach().select(mask.to(g.device))
    if len(parent) == 0:
        return parent
    parents = Gaussians.cat([parent] * pieces)
    offsets = torch.randn(len(parents), 3, generator=generator).to(parents.means) * parents.scales
    rotation = quat_to_rotmat(parents.quats)
    parents.means = parents.means + (rotation @ offsets[..., None])[..., 0]
    parents.log_scales = parents.log_scales - torch.log(torch.tensor(0.8 * pieces))
    return parents
