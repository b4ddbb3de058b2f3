"""The Consistent4D evaluation protocol on folders: per frame, then per view, then per object.

A prediction folder and a ground-truth folder both hold ``eval_<k>/<frame>.png`` (k = 0..3 for the
azimuths -75, 15, 105, 195). Each metric is averaged over the frames of a view, then over the views.
PSNR and SSIM are computed here; LPIPS, CLIP, CLIP-F and FVD arrive with the metrics issue and are
reported as missing, with that reason, never as numbers.
"""

from __future__ import annotations

import math
import statistics

import torch

from .. import storage
from ..errors import InputError
from ..media import list_frames, read_image
from .images import psnr, ssim

MISSING = {
    "lpips": "not computed yet: LPIPS arrives with the metrics issue",
    "clip": "not computed yet: CLIP similarity arrives with the metrics issue",
    "clip_f": "not computed yet: CLIP-F arrives with the metrics issue",
    "fvd": "not computed yet: FVD arrives with the metrics issue",
}


def _views(folder: str) -> list[str]:
    return sorted((n for n in storage.listdir(folder) if n.startswith("eval_")), key=lambda n: int(n[5:]))


def _read_view(folder: str) -> torch.Tensor:
    return torch.stack([read_image(storage.join(folder, name))[0] for name in list_frames(folder)])


def evaluate_views(pred: str, gt: str) -> dict:
    """PSNR and SSIM of ``pred`` against ``gt``, averaged over frames, then views.

    Views or frames that one side lacks, or images of different sizes, are input errors that name
    the view: a score over a partial set would not be comparable with other methods'.
    """
    gt_views = _views(gt)
    if not gt_views:
        raise InputError("no eval_<k> folders in the ground truth", uri=gt)
    per_view: dict[str, dict[str, float]] = {}
    for view in gt_views:
        truth = _read_view(storage.join(gt, view))
        if not storage.isdir(storage.join(pred, view)):
            raise InputError(f"the prediction has no {view}/", uri=pred)
        guess = _read_view(storage.join(pred, view))
        if guess.shape != truth.shape:
            raise InputError(f"{view}: prediction {tuple(guess.shape[:3])} vs ground truth {tuple(truth.shape[:3])} "
                             "(frames, height, width)", uri=pred)  # fmt: skip
        per_view[view] = {
            "psnr": _finite_mean(psnr(guess, truth)),
            "ssim": float(ssim(guess, truth).mean()),
        }
    return {
        "psnr": statistics.mean(v["psnr"] for v in per_view.values()),
        "ssim": statistics.mean(v["ssim"] for v in per_view.values()),
        "views": per_view,
        "missing": dict(MISSING),
    }


def _finite_mean(values: torch.Tensor) -> float:
    """Mean PSNR over frames; a frame identical to the truth (inf) counts as 100 dB, by convention."""
    return float(torch.where(torch.isinf(values), torch.full_like(values, 100.0), values).mean()) if len(values) else math.nan
