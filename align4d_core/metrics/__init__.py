"""Metrics of the Consistent4D protocol (DESIGN.md §7).

Image metrics live in :mod:`.images`; :mod:`.protocol` reads prediction and ground-truth folders in
the Consistent4D layout (``eval_<k>/<frame>.png``) and averages over frames, then views.
"""

from .images import psnr, ssim
from .protocol import evaluate_views

__all__ = ["evaluate_views", "psnr", "ssim"]
