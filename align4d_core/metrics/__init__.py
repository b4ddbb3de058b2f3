"""Metrics of the Consistent4D protocol (DESIGN.md §7).

Per-image PSNR and SSIM live in :mod:`.images`; the networks in :mod:`.lpips` (with :mod:`.vgg`),
:mod:`.clip` and :mod:`.fvd` (with :mod:`.i3d` and :mod:`.frechet`), their weights' locations in
:mod:`.weights`. :mod:`.protocol` reads prediction and ground-truth folders in the Consistent4D
layout (``eval_<k>/<frame>.png``) and averages over frames, then views.
"""

from align4d_core.metrics.frechet import frechet_distance
from align4d_core.metrics.images import psnr, ssim
from align4d_core.metrics.protocol import METRICS, MISSING, evaluate_views
from align4d_core.metrics.weights import MissingWeights

__all__ = ["METRICS", "MISSING", "MissingWeights", "evaluate_views", "frechet_distance", "psnr", "ssim"]
