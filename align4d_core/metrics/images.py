"""Per-image metrics on (N, H, W, 3) float tensors in [0, 1], one value per image."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per image, data range 1 (identical images give +inf)."""
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Structural similarity per image (torchmetrics: Gaussian window 11, σ 1.5, data range 1)."""
    return structural_similarity_index_measure(
        pred.permute(0, 3, 1, 2).double(), target.permute(0, 3, 1, 2).double(), data_range=1.0, reduction="none"
    )
