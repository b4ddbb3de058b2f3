"""FVD (Unterthiner et al. 2019) of one view: I3D logits of the predicted and true videos, Fréchet distance.

What the field's code does, and what we do:

* Features: Consistent4D's ``evaluation/compute_fvd.py`` (the protocol of DESIGN.md §7) feeds each
  view's whole frame sequence, resized to 224x224 (bicubic) and scaled to [-1, 1], to pytorch-i3d's
  ``InceptionI3d(400)`` with ``i3d_pretrained_400.pt`` and takes its 400 logits, averaged over time
  (:mod:`.i3d`). We do the same; the logits, not the 1024-d pooled features, are what StyleGAN-V,
  VideoGPT and Consistent4D all compare.
* One video per side: Consistent4D then fits a Gaussian to a single feature vector per side
  (``np.cov`` of one sample), whose covariance is undefined: NumPy returns NaN, on which current
  SciPy's ``sqrtm`` fails. common-metrics-on-video-quality's ``frechet_distance`` (StyleGAN-V's,
  with this case added) returns |μ_pred − μ_gt|² when each side has one video, i.e. the formula
  with both covariances zero. We take that rule (:func:`.frechet.frechet_distance` treats a single
  sample as a point mass, whose Fréchet distance to another is exactly that): it is never NaN, and
  with several videos per side the same function is the usual FVD. Sliding clips would also give several samples per side, but neither
  Consistent4D's nor common-metrics-on-video-quality's code does that, and a 400x400 covariance
  estimated from a dozen overlapping windows of one video is mostly noise.
* Per view, then the mean over the views (Consistent4D), then over objects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from align4d_core.metrics.frechet import frechet_distance
from align4d_core.metrics.i3d import InceptionI3d

I3D_SIZE = 224
"""I3D's input size; Consistent4D resizes every frame to 224x224."""


def preprocess(frames: Tensor) -> Tensor:
    """``(T, H, W, 3)`` in [0, 1] → ``(1, 3, T, 224, 224)`` in [-1, 1] (antialiased bicubic, like PIL)."""
    x = frames.permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (I3D_SIZE, I3D_SIZE):
        x = F.interpolate(x, size=(I3D_SIZE, I3D_SIZE), mode="bicubic", antialias=True, align_corners=False)
    return (x * 2.0 - 1.0).permute(1, 0, 2, 3).unsqueeze(0)


def i3d_logits(model: InceptionI3d, frames: Tensor) -> Tensor:
    """The ``(1, 400)`` I3D logits of one video ``(T, H, W, 3)`` in [0, 1], float64."""
    return i3d_logits_of(model, preprocess(frames))


@torch.inference_mode()
def i3d_logits_of(model: InceptionI3d, video: Tensor) -> Tensor:
    """The ``(1, 400)`` I3D logits of an I3D input ``(1, 3, T, 224, 224)`` in [-1, 1], float64."""
    device = next(model.parameters()).device
    return model(video.to(device)).double().cpu()


def fvd(model: InceptionI3d, pred: Tensor, target: Tensor) -> float:
    """FVD of one predicted view against its ground truth (one video per side: |Δ logits|²)."""
    return frechet_distance(i3d_logits(model, pred), i3d_logits(model, target))
