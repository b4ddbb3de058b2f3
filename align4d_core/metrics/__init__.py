"""Metrics of the Consistent4D protocol (DESIGN.md §7).

Per-image PSNR and SSIM live in :mod:`.images`; the networks in :mod:`.lpips` (with :mod:`.vgg`),
:mod:`.clip` and :mod:`.fvd` (with :mod:`.i3d` and :mod:`.frechet`), their weights' locations in
:mod:`.weights`. :mod:`.protocol` reads prediction and ground-truth folders in the Consistent4D
layout (``eval_<k>/<frame>.png``) and averages over frames, then views, with the arithmetic of
Consistent4D's scripts (:mod:`.consistent4d`) or the clean one; :mod:`.reference` keeps the ground
truth's features for every method scored on it.
"""

from align4d_core.metrics.frechet import frechet_distance
from align4d_core.metrics.images import psnr, ssim
from align4d_core.metrics.protocol import METRICS, MISSING, PROTOCOLS, evaluate_many, evaluate_views, pooled_fvd
from align4d_core.metrics.weights import MissingWeights

__all__ = [
    "METRICS",
    "MISSING",
    "PROTOCOLS",
    "MissingWeights",
    "evaluate_many",
    "evaluate_views",
    "frechet_distance",
    "pooled_fvd",
    "psnr",
    "ssim",
]
